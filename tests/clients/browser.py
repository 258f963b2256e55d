#!/usr/bin/env python3
"""A `$BROWSER` stand-in for the OAuth tests (Python 3 standard library only).

    browser.py [ignored args...] URL

GETs URL and follows redirects (301/302/303/307/308, and auto-submitting HTML forms such as
response_mode=form_post) with a cookie jar, across hosts, e.g. from the authorization server of
tests/servers/oauth_as.mjs into the proxy's loopback callback http://127.0.0.1:PORT/callback?...,
until a page that is not a redirect. Never uses an HTTP proxy.

Exit status: 0 when the last page answered 2xx, 1 otherwise (an HTTP error, a refused
connection, more than 20 hops), 2 when it did not finish within BROWSER_TIMEOUT.

Environment:
  BROWSER_LOG=path      append the URL it was given, one line per invocation, before fetching
                        (so tests can count how often a browser was opened)
  BROWSER_TIMEOUT=secs  give up after this long (default 30)
  BROWSER_DETACH=1      return at once (exit 0) and run the flow in a detached child process
                        (its stderr discarded), for callers that wait for the browser to exit
                        before serving the callback
  BROWSER_DELAY=secs    wait this long before the first request (default 0)

Stderr: one line per hop ("browser: GET url -> status"), with the query of the final callback.
"""

import html.parser
import http.cookiejar
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

MAX_HOPS = 20


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class FormFinder(html.parser.HTMLParser):
    """The first <form> of a page, with its hidden/text inputs (for auto-submitting pages)."""

    def __init__(self):
        super().__init__()
        self.form = None
        self.fields = []
        self.done = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.done:
            return
        if tag == "form" and self.form is None:
            self.form = a
        elif tag == "input" and self.form is not None and a.get("name"):
            if a.get("type", "text").lower() in ("hidden", "text", "submit"):
                self.fields.append((a["name"], a.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form" and self.form is not None:
            self.done = True


def log(msg):
    print(f"browser: {msg}", file=sys.stderr, flush=True)


def run(url, result):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar), NoRedirect()
    )
    method, data = "GET", None
    for _ in range(MAX_HOPS):
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("User-Agent", "mcp-proxy-test-browser/1.0")
        req.add_header("Accept", "text/html,application/json;q=0.9,*/*;q=0.8")
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            resp = opener.open(req, timeout=20)
            status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        except (urllib.error.URLError, OSError) as e:
            log(f"{method} {url} -> {e}")
            result["code"] = 1
            return
        log(f"{method} {url} -> {status}")
        if status in (301, 302, 303, 307, 308) and headers.get("Location"):
            url = urllib.parse.urljoin(url, headers["Location"])
            if status in (307, 308) and method == "POST":
                continue
            method, data = "GET", None
            continue
        text = body.decode("utf-8", "replace")
        if 200 <= status < 300 and "<form" in text.lower() and ".submit()" in text:
            finder = FormFinder()
            finder.feed(text)
            if finder.form is not None:
                url = urllib.parse.urljoin(url, finder.form.get("action") or url)
                method = (finder.form.get("method") or "GET").upper()
                encoded = urllib.parse.urlencode(finder.fields)
                if method == "POST":
                    data = encoded.encode()
                else:
                    url = f"{url.split('?', 1)[0]}?{encoded}"
                    data = None
                continue
        if status >= 300:
            log(f"final page {status}: {text[:300]!r}")
        result["code"] = 0 if 200 <= status < 300 else 1
        return
    log(f"more than {MAX_HOPS} hops")
    result["code"] = 1


def main():
    args = sys.argv[1:]
    if not args:
        print("usage: browser.py URL", file=sys.stderr)
        return 1
    url = args[-1]
    log_path = os.environ.get("BROWSER_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(url + "\n")
    if os.environ.get("BROWSER_DETACH") == "1":
        env = {k: v for k, v in os.environ.items() if k not in ("BROWSER_DETACH", "BROWSER_LOG")}
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), url],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return 0
    delay = float(os.environ.get("BROWSER_DELAY", "0"))
    if delay > 0:
        time.sleep(delay)
    timeout = float(os.environ.get("BROWSER_TIMEOUT", "30"))
    result = {}
    worker = threading.Thread(target=run, args=(url, result), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log(f"gave up after {timeout:g} s")
        return 2
    return result.get("code", 1)


if __name__ == "__main__":
    sys.exit(main())
