"""Drive Debian's headless Chromium from a test: load a page, report its images and errors, screenshot it.

No DevTools client is needed: a copy of the page gets a first script that
records every error (script errors, failed resource loads, Content-Security-
Policy violations, console.error) and, on the load event, writes a JSON
verdict into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio"]

PROBE = """<script>
window.__reglabErrors = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  __reglabErrors.push(t && t !== window ? "resource failed: <" + t.tagName + "> " + String(t.src || t.href || "").slice(0, 80)
                                        : "script error: " + e.message);
}, true);
document.addEventListener("securitypolicyviolation", function (e) {
  __reglabErrors.push("blocked by CSP: " + e.blockedURI + " (" + e.violatedDirective + ")");
});
var __reglabConsoleError = console.error;
console.error = function () { __reglabErrors.push("console.error: " + Array.prototype.join.call(arguments, " "));
                              __reglabConsoleError.apply(console, arguments); };
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var verdict = {
    images: imgs.length,
    undecoded: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; }),
    widths: imgs.map(function (i) { return i.naturalWidth; }),
    errors: __reglabErrors
  };
  var pre = document.createElement("pre");
  pre.id = "reglab-verdict";
  pre.textContent = JSON.stringify(verdict);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="reglab-chromium-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def check_page(browser: str, html_path: Path, *, timeout: float = 120.0) -> dict:
    """Load a probed copy of `html_path` (same folder, so relative links behave) and return the verdict.

    The copy's Content-Security-Policy additionally allows inline scripts (the probe); every other
    directive stays, so a request the report should not make is still blocked and reported.
    """
    html = html_path.read_text(encoding="utf-8")
    html = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    html = re.sub(r"<head>", "<head>" + PROBE, html, count=1)
    probe_path = html_path.with_name(".probe-" + html_path.name)
    probe_path.write_text(html, encoding="utf-8")
    try:
        res = _run(browser, ["--virtual-time-budget=20000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                             probe_path.as_uri()], timeout)
    finally:
        probe_path.unlink()
    m = re.search(r'<pre id="reglab-verdict">(.*?)</pre>', res.stdout, re.S)
    if not m:
        raise AssertionError(f"the page never reached its load event; chromium exit {res.returncode}, "
                             f"stderr tail: {res.stderr[-2000:]}")
    verdict = json.loads(m.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                         .replace("&amp;", "&"))
    # every console message, as chromium logs it (without its level): the report has no script, so
    # anything here came from the browser itself (a blocked request, a broken resource) or the probe
    verdict["console"] = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    return verdict


def screenshot(browser: str, html_path: Path, out_png: Path, *, width: int = 1280, height: int = 4000,
               timeout: float = 120.0) -> None:
    res = _run(browser, [f"--window-size={width},{height}", "--hide-scrollbars", f"--screenshot={out_png}",
                         html_path.as_uri()], timeout)
    if not out_png.exists():
        raise AssertionError(f"chromium wrote no screenshot; exit {res.returncode}, stderr: {res.stderr[-2000:]}")
