"""(c) Provisioning: POST /v1/databases through the gateway vs the same DDL issued directly.

One platform (identity + provisioner, its own ports and data) and one tenant cluster; every
floor runs on that same cluster, interleaved with ours where the figure is a latency:

1. serial create latency (answer + first login with the returned uri), N=40, p50/p95;
2. throughput with 8 concurrent clients (8 users on a paid plan) vs 8 raw DDL workers,
   in floor/ours/ours/floor segments so drift in the cluster (checkpoints) cancels out;
3. serial create latency with ~1,000 databases on the platform vs on the empty platform;
4. GET /v1/databases p50 for users holding 3 and 100 of those, vs the same SQL direct.

Floor objects are named `bench_floor_*`. At the end the tenant cluster's data directory is
removed with them (a fresh one is made per run); PROV_BENCH_KEEP=1 keeps the cluster and drops
the floor objects instead. PROV_BENCH_PYSPY=<dir> records the provisioner API with py-spy
(raw format) during the serial and throughput phases.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from common import Row, percentile, print_table
from prov_floor import FloorWorker, drop_all, login
from prov_stack import PAID_PLAN, User, prov_stack_config, raise_capacity, signup

N_SERIAL = 40
N_WARMUP = 5
N_SCALE = 20
SCALE_TARGET = 1000  # databases on the platform for the scale and list phases
WORKERS = 8
SEGMENT_SECONDS = 5.0  # two segments each side: ~10 s of load per side
LIST_WARMUP = 30
LIST_REQUESTS = 300
FREE_PLAN = "free"  # the common case; its per-account limit is lifted for this stack


@dataclass
class Platform:
    stack: object  # shardz_devstack.testing.RunningStack
    host: str
    url: str
    admin_dsn: str
    tenant_host: str
    tenant_port: int

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0)

    def floor_worker(self) -> FloorWorker:
        return FloorWorker(self.admin_dsn, self.tenant_host, self.tenant_port)


@dataclass
class Counts:
    platform: int = 0  # databases created through the API
    floor: int = 0
    errors: list[str] = field(default_factory=list)


def api_create(
    client: httpx.Client, p: Platform, user: User, plan: str, tag: str, *, first_login: bool = True
) -> tuple[float, float]:
    """POST /v1/databases, then a first login with the returned uri: (to 201, to login) s."""
    t0 = time.perf_counter()
    resp = client.post(
        "/v1/databases",
        json={"name": user.next_name(tag), "plan": plan},
        headers=user.headers(p.host),
    )
    t1 = time.perf_counter()
    if resp.status_code != 201:
        raise RuntimeError(f"POST /v1/databases: {resp.status_code} {resp.text[:300]}")
    if first_login:
        login(resp.json()["uri"])
    return t1 - t0, time.perf_counter() - t0


def serial(
    p: Platform, user: User, n: int, tag: str, counts: Counts
) -> tuple[list[float], list[float], list[float]]:
    """n creations each way, interleaved: (floor, ours to 201, ours to first login) in ms."""
    floor, answered, ready = [], [], []
    worker = p.floor_worker()
    try:
        with p.client() as client:
            for i in range(n):
                # alternate who goes first so neither always follows the other's WAL burst
                if i % 2 == 0:
                    floor.append(worker.create() * 1000)
                a, r = api_create(client, p, user, FREE_PLAN, tag)
                answered.append(a * 1000)
                ready.append(r * 1000)
                if i % 2 == 1:
                    floor.append(worker.create() * 1000)
    finally:
        worker.close()
    counts.platform += n
    counts.floor += n
    return floor, answered, ready


def run_workers(
    makers: list[Callable[[], Callable[[], None]]], seconds: float
) -> tuple[int, float]:
    """Each maker builds a worker's `create()`; all start together and loop until the deadline.
    Returns (databases made, seconds from the start to the last one finishing)."""
    barrier = threading.Barrier(len(makers) + 1)
    done = [0] * len(makers)
    ends = [0.0] * len(makers)
    errors: list[BaseException] = []
    start = [0.0]

    def loop(i: int) -> None:
        try:
            create = makers[i]()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
            raise
        barrier.wait()
        deadline = start[0] + seconds
        try:
            while time.perf_counter() < deadline:
                create()
                done[i] += 1
                ends[i] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(makers))]
    for t in threads:
        t.start()
    start[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0]!r}") from errors[0]
    return sum(done), max(ends) - start[0]


def throughput(p: Platform, users: list[User], counts: Counts) -> tuple[float, float, str]:
    """databases/s (ours, floor) with WORKERS clients each, in ABBA segments."""
    stack_: contextlib.ExitStack = contextlib.ExitStack()

    def ours_maker(user: User) -> Callable[[], Callable[[], None]]:
        def make() -> Callable[[], None]:
            client = stack_.enter_context(p.client())

            def create() -> None:
                api_create(client, p, user, PAID_PLAN, "tp")

            return create

        return make

    def floor_maker() -> Callable[[], None]:
        worker = p.floor_worker()
        stack_.callback(worker.close)

        def create() -> None:
            worker.create()

        return create

    totals = {"ours": [0, 0.0], "floor": [0, 0.0]}
    detail = []
    with stack_:
        for side in ("floor", "ours", "ours", "floor"):
            if side == "ours":
                made, took = run_workers([ours_maker(u) for u in users], SEGMENT_SECONDS)
                counts.platform += made
            else:
                made, took = run_workers([floor_maker] * WORKERS, SEGMENT_SECONDS)
                counts.floor += made
            totals[side][0] += made
            totals[side][1] += took
            detail.append(f"{side} {made / took:.1f}/s")
    ours = totals["ours"][0] / totals["ours"][1]
    floor = totals["floor"][0] / totals["floor"][1]
    return ours, floor, ", ".join(detail)


def fill(p: Platform, plan: list[User], counts: Counts) -> tuple[int, float]:
    """Create one database per entry of `plan` through the API, WORKERS at a time."""
    tasks: queue.SimpleQueue[User] = queue.SimpleQueue()
    for user in plan:
        tasks.put(user)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def loop() -> None:
        with p.client() as client:
            while True:
                try:
                    user = tasks.get_nowait()
                except queue.Empty:
                    return
                try:
                    with lock:  # names come from a per-user counter
                        name = user.next_name("fill")
                    resp = client.post(
                        "/v1/databases",
                        json={"name": name, "plan": PAID_PLAN},
                        headers=user.headers(p.host),
                    )
                    if resp.status_code != 201:
                        raise RuntimeError(f"{resp.status_code} {resp.text[:300]}")
                except BaseException as exc:
                    errors.append(exc)
                    return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"fill failed: {errors[0]!r}") from errors[0]
    counts.platform += len(plan)
    return len(plan), took


LIST_SQL = (
    "SELECT d.*, c.* FROM databases d JOIN clusters c ON c.name = d.cluster"
    " WHERE d.user_id = %s AND d.status <> 'deleted' ORDER BY d.created_at"
)


def list_latency(p: Platform, user: User, control_dsn: str) -> tuple[float, float, int]:
    """p50 ms of GET /v1/databases (sequential, after warm-up) and of its SQL, direct."""
    with p.client() as client:
        headers = user.headers(p.host)
        resp = client.get("/v1/databases", headers=headers)
        assert resp.status_code == 200, resp.text
        items = len(resp.json()["items"])
        user_id = None
        for _ in range(LIST_WARMUP):
            client.get("/v1/databases", headers=headers)
        times = []
        for _ in range(LIST_REQUESTS):
            t0 = time.perf_counter()
            r = client.get("/v1/databases", headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200
        me = client.get("/v1/users/me", headers=headers)
        user_id = uuid.UUID(me.json()["id"])
    floor = []
    with psycopg.connect(control_dsn) as conn:
        for i in range(LIST_WARMUP + LIST_REQUESTS):
            t0 = time.perf_counter()
            rows = conn.execute(LIST_SQL, (user_id,)).fetchall()
            if i >= LIST_WARMUP:
                floor.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == items, (len(rows), items)
    return percentile(times, 50), percentile(floor, 50), items


def start_platform():  # type: ignore[no-untyped-def]
    from shardz_devstack.testing import start_test_stack

    # Serial phases use the free plan; lift its per-account limit for this stack's processes.
    saved = os.environ.get("PLATFORM_FREE_PLAN_DATABASES")
    os.environ["PLATFORM_FREE_PLAN_DATABASES"] = "100000"
    try:
        return start_test_stack(prov_stack_config())
    finally:
        if saved is None:
            del os.environ["PLATFORM_FREE_PLAN_DATABASES"]
        else:
            os.environ["PLATFORM_FREE_PLAN_DATABASES"] = saved


@contextlib.contextmanager
def profiled(pid: int, label: str, seconds: int) -> Iterator[None]:
    """py-spy on the provisioner API for `seconds` when PROV_BENCH_PYSPY names a directory."""
    out_dir = os.environ.get("PROV_BENCH_PYSPY")
    if not out_dir or not shutil.which("py-spy"):
        yield
        return
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = Path(out_dir) / f"provisioner-{label}.txt"
    cmd = ["py-spy", "record", "-p", str(pid), "-d", str(seconds), "-f", "raw", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        proc.wait(timeout=seconds + 30)
        print(f"py-spy profile: {out}", flush=True)


def ms(values: list[float]) -> tuple[str, str]:
    return f"{percentile(values, 50):.1f}", f"{percentile(values, 95):.1f}"


def run() -> list[Row]:
    t_all = time.monotonic()
    stack = start_platform()
    print(f"provisioning stack up in {time.monotonic() - t_all:.1f}s at {stack.gateway_url}")
    cluster = stack.tenant_clusters[0]
    p = Platform(
        stack, stack.host("api"), stack.gateway_url, cluster.admin_dsn, "127.0.0.1", cluster.port
    )
    control_dsn = stack.env["PROVISIONER_DATABASE_URL"].replace(
        "postgresql+psycopg://", "postgresql://", 1
    )
    pid = stack.processes["provisioner-api"].pid
    print(f"provisioner api pid {pid}; tenant cluster :{cluster.port}", flush=True)
    counts = Counts()
    try:
        with p.client() as client:
            raise_capacity(client, stack)
            serial_user = signup(client, p.host)
            tp_users = [signup(client, p.host) for _ in range(WORKERS)]
            holds_3, holds_100 = signup(client, p.host), signup(client, p.host)

        t = time.monotonic()
        serial(p, serial_user, N_WARMUP, "warm", counts)  # pools, caches, first-use costs
        with profiled(pid, "serial", 8):
            floor1, ans1, ready1 = serial(p, serial_user, N_SERIAL, "serial", counts)
        print(f"serial phase: {time.monotonic() - t:.1f}s", flush=True)

        t = time.monotonic()
        with profiled(pid, "throughput", 20):
            tp_ours, tp_floor, tp_detail = throughput(p, tp_users, counts)
        print(f"throughput phase: {time.monotonic() - t:.1f}s ({tp_detail})", flush=True)

        # Up to SCALE_TARGET platform databases: 100 and 3 for the list users, the rest spread
        # over the throughput users; interleaved so one account's lock never holds a worker.
        rest = max(0, SCALE_TARGET - counts.platform - 103)
        step = max(1, rest // 100)
        plan = [holds_3] * 3
        for i in range(rest):
            if i % step == 0 and plan.count(holds_100) < 100:
                plan.append(holds_100)
            plan.append(tp_users[i % WORKERS])
        plan += [holds_100] * (100 - plan.count(holds_100))
        t = time.monotonic()
        made, took = fill(p, plan, counts)
        print(
            f"fill: {made} databases through the API in {took:.1f}s ({made / took:.1f}/s, "
            f"{WORKERS} clients, no login); {counts.platform} on the platform",
            flush=True,
        )

        floor3, ans3, ready3 = serial(p, serial_user, N_SCALE, "scale", counts)
        with psycopg.connect(p.admin_dsn) as conn:
            on_cluster = conn.execute(
                "SELECT count(*) FROM pg_database WHERE NOT datistemplate"
            ).fetchone()[0]  # type: ignore[index]
        list3, list3_floor, n3 = list_latency(p, holds_3, control_dsn)
        list100, list100_floor, n100 = list_latency(p, holds_100, control_dsn)
    finally:
        try:
            if os.environ.get("PROV_BENCH_KEEP"):
                t = time.monotonic()
                dropped = drop_all(p.admin_dsn)
                print(f"dropped {dropped} floor databases in {time.monotonic() - t:.1f}s")
        finally:
            stack.stop()
            if not os.environ.get("PROV_BENCH_KEEP"):
                # The floor's databases go with the whole cluster (~8 MB each, gigabytes in
                # all): dropping them one by one costs a checkpoint each, about a minute.
                shutil.rmtree(cluster.data_dir, ignore_errors=True)

    f50, f95 = percentile(floor1, 50), percentile(floor1, 95)
    r50, r95 = percentile(ready1, 50), percentile(ready1, 95)
    s50 = percentile(ready3, 50)
    print_table(
        f"provisioning: serial create latency, ms (N={N_SERIAL}, empty platform; "
        f"then N={N_SCALE} with {counts.platform - N_SCALE} platform databases, "
        f"{on_cluster} on the cluster)",
        ["", "p50", "p95", "p50 @1k", "p95 @1k"],
        [
            ["platform: POST /v1/databases -> 201", *ms(ans1), *ms(ans3)],
            ["platform: 201 + first login (the figure)", *ms(ready1), *ms(ready3)],
            ["floor: raw DDL + first login, direct", *ms(floor1), *ms(floor3)],
            [
                "ratio ours/floor (goal p50 <= 1.5, p95 <= 2.0)",
                f"{r50 / f50:.2f}",
                f"{r95 / f95:.2f}",
                f"{s50 / percentile(floor3, 50):.2f}",
                f"{percentile(ready3, 95) / percentile(floor3, 95):.2f}",
            ],
        ],
    )
    print_table(
        f"provisioning: throughput, {WORKERS} concurrent clients, 2 x {SEGMENT_SECONDS:.0f}s each",
        ["", "databases/s"],
        [
            ["platform: 8 users, POST + first login", f"{tp_ours:.1f}"],
            ["floor: 8 raw DDL workers + first login", f"{tp_floor:.1f}"],
            ["ratio ours/floor (goal >= 0.8)", f"{tp_ours / tp_floor:.2f}"],
        ],
    )
    print_table(
        f"provisioning: GET /v1/databases with {counts.platform} platform databases, ms "
        f"({LIST_REQUESTS} sequential after {LIST_WARMUP} warm-up)",
        ["", "p50 ours", "p50 SQL direct"],
        [
            [f"user holding {n3}", f"{list3:.2f}", f"{list3_floor:.2f}"],
            [f"user holding {n100}", f"{list100:.2f}", f"{list100_floor:.2f}"],
        ],
    )
    verdicts = [
        ("create p50 <= 1.5 x floor", r50 / f50 <= 1.5),
        ("create p95 <= 2 x floor", r95 / f95 <= 2.0),
        ("throughput >= 0.8 x floor", tp_ours / tp_floor >= 0.8),
        ("create p50 @1k <= 1.5 x empty", s50 / r50 <= 1.5),
        ("list p50 < 20 ms (3 and 100 held)", max(list3, list100) < 20),
    ]
    for name, ok in verdicts:
        print(f"{name}: {'OK' if ok else 'MISSED'}")
    print(f"provisioning bench: {time.monotonic() - t_all:.0f}s in all", flush=True)
    return [
        Row("create + first login p50", r50, f50, "ms", "<= 1.5 x floor", higher_is_better=False),
        Row("create + first login p95", r95, f95, "ms", "<= 2 x floor", higher_is_better=False),
        Row("databases/s, 8 clients", tp_ours, tp_floor, "db/s", ">= 0.8 x floor"),
        Row(
            f"create p50 at {counts.platform - N_SCALE} dbs (floor: empty platform)",
            s50,
            r50,
            "ms",
            "<= 1.5 x empty",
            higher_is_better=False,
        ),
        Row(
            f"GET /v1/databases p50, {n3} held (floor: SQL)",
            list3,
            list3_floor,
            "ms",
            "< 20 ms",
            higher_is_better=False,
        ),
        Row(
            f"GET /v1/databases p50, {n100} held (floor: SQL)",
            list100,
            list100_floor,
            "ms",
            "< 20 ms",
            higher_is_better=False,
        ),
    ]
