"""Opens an HTML file in headless Chromium through Playwright (the system's browser: Playwright
downloads none) and prints, as JSON, what the page did: console errors and page errors, the
elements each selector given matches, and where the full-page screenshot went.

usage: browser_check.py CHROMIUM HTML SCREENSHOT SELECTOR...
"""

import json
import pathlib
import sys

from playwright.sync_api import sync_playwright


def main():
    chromium, html, screenshot, *selectors = sys.argv[1:]
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console",
            lambda m: errors.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None,
        )
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(pathlib.Path(html).resolve().as_uri(), wait_until="load")
        counts = {s: page.locator(s).count() for s in selectors}
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    external = [u for u in requests if not u.startswith("file://")]
    print(json.dumps({"errors": errors, "counts": counts, "external_requests": external}))


if __name__ == "__main__":
    main()
