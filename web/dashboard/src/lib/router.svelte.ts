// A small history-API router: the gateway answers every unknown path with index.html.
export const route = $state({ path: location.pathname, query: new URLSearchParams(location.search) });

export function navigate(to: string, replace = false): void {
  const url = new URL(to, location.origin);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route.path = url.pathname;
  route.query = url.searchParams;
  window.scrollTo(0, 0);
}

addEventListener("popstate", () => {
  route.path = location.pathname;
  route.query = new URLSearchParams(location.search);
});

/** For <a href> clicks: stay in the app unless the person asked for a new tab. */
export function link(node: HTMLAnchorElement): void {
  node.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    const href = node.getAttribute("href");
    if (!href?.startsWith("/")) return;
    event.preventDefault();
    navigate(href);
  });
}
