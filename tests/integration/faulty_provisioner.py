"""`python tests/integration/faulty_provisioner.py STEP COMMAND`: the provisioner with a crash
armed at STEP (see shardz_provisioner.faults); a test-only launcher."""

import sys

from shardz_provisioner import faults
from shardz_provisioner.__main__ import main

if __name__ == "__main__":
    faults.arm(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    main()
