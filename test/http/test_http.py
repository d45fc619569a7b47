# SPDX-License-Identifier: Apache-2.0
"""memctl serve, end to end: curl against the HTTP endpoints, tenant
processes (build/test/prog_tenant) under LD_PRELOAD=libmemctl.so on the
simulated driver, the metrics checked by promtool.

Nothing here waits for a duration: it waits for events (a line printed, a
request shown running by the process's hello, a process exiting), each
bounded only by a generous guard against a hang.
Prints "http: N passed, M failed"; exits non-zero on any failure.
usage: python3 test/http/test_http.py BUILD_DIR
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
WORK = tempfile.mkdtemp(prefix="memctl-http-")
RUN = os.path.join(WORK, "run")
HOLD = os.path.join(WORK, "hold")
GUARD = 60  # seconds: only against a hang, never a measurement
MiB = 1 << 20
passed, failed = 0, 0


def env_for(**extra):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("MEMCTL_") or k.startswith("FAKECUDA_"):
            del env[k]
    env.update(LD_LIBRARY_PATH=os.path.join(BUILD, "fake"), MEMCTL_RUNTIME_DIR=RUN,
               FAKECUDA_STATE=os.path.join(WORK, "fakecuda.state"), FAKECUDA_MEMORY="8G")
    env.update(extra)
    return env


class Tenant:
    """prog_tenant: 2 weights and 4 kv_cache allocations of about 1 MiB."""

    def __init__(self, group=None, **env):
        extra = dict(env)
        if group:
            extra["MEMCTL_GROUP"] = group
        extra["LD_PRELOAD"] = os.path.join(BUILD, "libmemctl.so")
        self.p = subprocess.Popen([os.path.join(BUILD, "test/prog_tenant"), "2", str(MiB), "4",
                                   str(MiB)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env_for(**extra))
        line = self.p.stdout.readline()
        assert line.startswith("ready"), "tenant did not start: %r" % line
        self.pid = self.p.pid
        # The socket comes with the first CUDA allocation, before "ready".
        assert os.path.exists(os.path.join(RUN, "%d.sock" % self.pid))

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def probe(self):
        return self.ask("probe")

    def quit(self):
        try:
            os.kill(self.pid, signal.SIGCONT)
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=GUARD)
        except Exception:
            self.p.kill()
            self.p.wait()


def hello(pid):
    """The process's hello reply, straight from its socket."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(GUARD)
    s.connect(os.path.join(RUN, "%d.sock" % pid))
    s.sendall(b"hello\n")
    reply = s.makefile().readline()
    s.close()
    return json.loads(reply)


def change_counts(pid):
    """Requests the process's server ended, per verb and result."""
    c = hello(pid)["counters"]["verbs"]
    return {v: dict(c[v]["results"]) for v in c}


def wait_for(what, cond):
    end = time.monotonic() + GUARD
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("never happened: " + what)
        time.sleep(0.005)


class Serve:
    """memctl serve on a free port; its log goes to WORK/serve.log."""

    def __init__(self, *args, **env):
        self.log = os.path.join(WORK, "serve.log")
        with open(self.log, "a") as log:
            self.p = subprocess.Popen([os.path.join(BUILD, "memctl"), "serve", "--listen",
                                       "127.0.0.1:0"] + list(args), stdout=subprocess.PIPE,
                                      stderr=log, text=True, env=env_for(**env))
        line = self.p.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            self.p.kill()
            raise AssertionError("memctl serve did not start: %r %s" % (line, open(self.log).read()))
        self.url = m.group(1)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=GUARD)
        assert rc == 0, "memctl serve exited %d" % rc


def curl(url, method="GET", body=None, headers=(), raw=None):
    """(status, parsed JSON or text, response headers) of one request."""
    out, hdr = os.path.join(WORK, "body"), os.path.join(WORK, "headers")
    cmd = ["curl", "-sS", "--max-time", str(GUARD), "-o", out, "-D", hdr, "-w", "%{http_code}",
           "-X", method, url]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary",
                body if isinstance(body, str) else json.dumps(body)]
    if raw is not None:
        cmd += ["--data-binary", "@" + raw]
    for h in headers:
        cmd += ["-H", h]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=GUARD + 10)
    assert r.returncode == 0, "curl failed: %s" % r.stderr
    text = open(out).read()
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    return int(r.stdout), data, open(hdr).read()


def post(serve, path, body=None, **kw):
    return curl(serve.url + path, "POST", body, **kw)


def get(serve, path, **kw):
    return curl(serve.url + path, **kw)


def tag_state(status_reply, tag):
    return [t for t in status_reply["tags"] if t["tag"] == tag][0]


def promtool(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=GUARD)
    return r.returncode, r.stdout + r.stderr


def sample(text, name, **labels):
    """The value of the sample of `name` whose labels include `labels`."""
    for line in text.splitlines():
        m = re.match(r"(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            return float(m.group(3))
    return None


# ---- the tests -----------------------------------------------------------

def test_every_endpoint_and_contents_bit_identical():
    a, b, other = Tenant("g"), Tenant("g"), Tenant("other")
    s = Serve("--group", "g")
    try:
        code, st, _ = get(s, "/status")
        assert code == 200 and st["ok"] and st["targets"] == 2, st
        assert sorted(p["pid"] for p in st["processes"]) == sorted([a.pid, b.pid]), st
        assert all(p["verb"] == "status" and p["tags"] for p in st["processes"]), st

        # SGLang: release with staging, resume; the contents come back.
        code, r, _ = post(s, "/release_memory_occupation", {"tags": ["weights"], "stage_to_cpu": True})
        assert code == 200 and r["ok"], r
        assert all(p["steps"][0]["released_bytes"] > 0 for p in r["processes"]), r
        assert a.probe() == b.probe() == "weights=released kv_cache=mapped"
        assert other.probe() == "weights=mapped kv_cache=mapped", "another group was touched"
        assert get(s, "/is_sleeping")[1] == {"is_sleeping": True}
        code, r, _ = post(s, "/resume_memory_occupation", {"tags": ["weights"]})
        assert code == 200 and r["ok"], r
        assert a.ask("check") == b.ask("check") == "ok", "contents differ after staged resume"
        assert get(s, "/is_sleeping")[1] == {"is_sleeping": False}

        # vLLM: level 1 keeps the weights in host memory, releases the rest.
        code, r, _ = post(s, "/sleep?level=1")
        assert code == 200, r
        assert a.probe() == b.probe() == "weights=released kv_cache=released"
        st = get(s, "/status")[1]["processes"][0]
        assert tag_state(st, "weights")["state"] == "staged", st
        assert tag_state(st, "kv_cache")["state"] == "paused", st
        code, r, _ = post(s, "/wake_up?tags=weights")
        assert code == 200, r
        assert a.probe() == "weights=mapped kv_cache=released"
        assert get(s, "/is_sleeping")[1] == {"is_sleeping": True}
        code, r, _ = post(s, "/wake_up?tags=kv_cache")
        assert code == 200 and get(s, "/is_sleeping")[1] == {"is_sleeping": False}
        # The weights were staged; kv_cache was not, its contents are undefined.
        for t in (a, b):
            said = t.ask("check")
            assert said == "ok" or said.startswith("bad kv_cache"), "weights differ: " + said

        # Level 2 releases everything, staging nothing; wake_up alone: all.
        code, r, _ = post(s, "/sleep?level=2")
        assert code == 200, r
        st = get(s, "/status")[1]["processes"][0]
        assert st["staged_bytes"] == 0 and st["active_bytes"] == 0 and st["paused_bytes"] > 0, st
        code, r, _ = post(s, "/wake_up")
        assert code == 200 and a.probe() == "weights=mapped kv_cache=mapped", r

        # No body, {} and "tags": null all mean every tag.
        assert post(s, "/release_memory_occupation")[0] == 200
        assert a.probe() == "weights=released kv_cache=released"
        assert post(s, "/resume_memory_occupation", {})[0] == 200
        assert post(s, "/release_memory_occupation", {"tags": None})[0] == 200
        assert post(s, "/resume_memory_occupation", {"tags": None})[0] == 200
        assert a.probe() == b.probe() == "weights=mapped kv_cache=mapped"
        assert other.probe() == "weights=mapped kv_cache=mapped", "another group was touched"
        s.stop()
    finally:
        for t in (a, b, other):
            t.quit()


def test_configured_levels():
    a = Tenant()
    s = Serve("--level1-stage", "weights,kv_cache", "--level2-stage", "kv_cache")
    try:
        assert post(s, "/sleep?level=1")[0] == 200
        st = get(s, "/status")[1]["processes"][0]
        assert tag_state(st, "weights")["state"] == tag_state(st, "kv_cache")["state"] == "staged"
        assert post(s, "/wake_up")[0] == 200 and a.ask("check") == "ok"
        assert post(s, "/sleep?level=2")[0] == 200
        st = get(s, "/status")[1]["processes"][0]
        assert tag_state(st, "weights")["state"] == "paused", st
        assert tag_state(st, "kv_cache")["state"] == "staged", st
        assert post(s, "/wake_up")[0] == 200
        s.stop()
    finally:
        a.quit()


def test_pauses_close_the_gate_only_with_gate():
    """With `memctl serve --gate` a release or a sleep holds the processes'
    GPU work until the resume (the gate), as `memctl pause` does; without it,
    not (a weights-only resume must let the engine update its weights)."""
    a = Tenant()
    try:
        for args, closed in (((), False), (("--gate",), True)):
            s = Serve(*args)
            for pause, resume in (("/release_memory_occupation", "/resume_memory_occupation"),
                                  ("/sleep?level=1", "/wake_up")):
                body = {"tags": ["weights"], "stage_to_cpu": True} if "release" in pause else None
                code, r, _ = post(s, pause, body)
                assert code == 200 and r["ok"], r
                st = get(s, "/status")[1]["processes"][0]
                assert st["gate"]["closed"] is closed, (args, pause, st["gate"])
                assert post(s, resume)[0] == 200
                st = get(s, "/status")[1]["processes"][0]
                assert st["gate"]["closed"] is False, (args, resume, st["gate"])
                said = a.ask("check")  # kv_cache was released unstaged by the sleep
                assert said == "ok" or said.startswith("bad kv_cache"), said
            s.stop()
    finally:
        a.quit()


def test_metrics_pass_promtool_and_count_every_client():
    a, b = Tenant("g"), Tenant("g")
    s = Serve()
    try:
        assert post(s, "/release_memory_occupation", {"tags": ["weights"], "stage_to_cpu": True})[0] == 200
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        # A request from another client counts too: the process keeps the count.
        r = subprocess.run([os.path.join(BUILD, "memctl"), "pause", "--tags", "kv_cache", "-p",
                            str(a.pid)], capture_output=True, text=True, env=env_for(), timeout=GUARD)
        assert r.returncode == 0, r.stdout + r.stderr
        code, text, headers = get(s, "/metrics")
        assert code == 200 and "text/plain; version=0.0.4" in headers, headers
        rc, out = promtool(text)
        assert rc == 0, "promtool check metrics: " + out
        for t in (a, b):
            assert sample(text, "memctl_up", pid=t.pid, group="g") == 1
            assert sample(text, "memctl_tag_active_bytes", pid=t.pid, tag="weights") > 0
            assert sample(text, "memctl_tag_host_bytes", pid=t.pid, tag="weights") > 0
            assert sample(text, "memctl_last_staged_pause_bytes_per_second", pid=t.pid) > 0
            assert sample(text, "memctl_last_staged_resume_bytes", pid=t.pid) > 0
            assert sample(text, "memctl_resume_failures_total", pid=t.pid) == 0
            assert sample(text, "memctl_requests_total", pid=t.pid, verb="resume", result="ok") == 1
            assert sample(text, "memctl_request_duration_seconds_count", pid=t.pid, verb="resume") == 1
            assert sample(text, "memctl_device_total_bytes", pid=t.pid, device=0) == 8 << 30
            # Everything the tenant allocates is tagged: nothing uncontrolled.
            assert sample(text, "memctl_uncontrolled_bytes", pid=t.pid) == 0
            assert sample(text, "memctl_untagged_bytes", pid=t.pid, call="cuMemAlloc") == 0
            assert sample(text, "memctl_tag_resident_bytes", pid=t.pid, tag="weights") == 0
        assert sample(text, "memctl_requests_total", pid=a.pid, verb="pause", result="ok") == 2
        assert sample(text, "memctl_requests_total", pid=b.pid, verb="pause", result="ok") == 1
        assert sample(text, "memctl_tag_paused_bytes", pid=a.pid, tag="kv_cache") > 0
        assert sample(text, "memctl_serve_targets") == 2
        assert sample(text, "memctl_serve_http_requests_total",
                      endpoint="/release_memory_occupation", code=200) == 1
        assert sample(text, "memctl_serve_http_request_duration_seconds_count",
                      endpoint="/resume_memory_occupation") == 1
        s.stop()
    finally:
        a.quit()
        b.quit()


def test_bad_requests_are_refused_and_change_nothing():
    a, b = Tenant(), Tenant()
    s = Serve()
    big = os.path.join(WORK, "big.json")
    with open(big, "w") as f:
        f.write('{"tags": ["weights"], "x": "%s"}' % ("y" * 20000))
    try:
        b.ask("tags 1")  # b alone carries t000
        before = (change_counts(a.pid), change_counts(b.pid))
        cases = [
            ("POST", "/release_memory_occupation", "{", 400, "malformed_json"),
            ("POST", "/release_memory_occupation", "[]", 400, "malformed_json"),
            ("POST", "/release_memory_occupation", '{"tags":["weights"],"tags":["kv_cache"]}', 400, "malformed_json"),
            ("POST", "/release_memory_occupation", {"tags": ["weights"], "rid": "x"}, 400, "unknown_field"),
            ("POST", "/release_memory_occupation", {"tags": "weights"}, 400, "bad_tags"),
            ("POST", "/release_memory_occupation", {"tags": [1]}, 400, "bad_tags"),
            ("POST", "/release_memory_occupation", {"tags": []}, 400, "bad_tags"),
            ("POST", "/release_memory_occupation", {"tags": ["a b"]}, 400, "bad_tags"),
            ("POST", "/release_memory_occupation", {"tags": ["t%d" % i for i in range(17)]}, 400, "bad_tags"),
            ("POST", "/release_memory_occupation", {"tags": ["weights"], "stage_to_cpu": "yes"}, 400, "bad_request"),
            ("POST", "/resume_memory_occupation", {"tags": ["weights"], "stage_to_cpu": True}, 400, "unknown_field"),
            ("POST", "/release_memory_occupation", {"tags": ["nothing_here"]}, 400, "unknown_tag"),
            ("POST", "/release_memory_occupation", {"tags": ["weights", "t000"]}, 400, "unknown_tag"),
            ("POST", "/wake_up?tags=nothing_here", None, 400, "unknown_tag"),
            ("POST", "/wake_up?tags=", None, 400, "bad_tags"),
            ("POST", "/sleep?level=3", None, 400, "bad_level"),
            ("POST", "/sleep?level=1&level=2", None, 400, "bad_request"),
            ("POST", "/sleep?level=1&mode=abort", None, 400, "unknown_parameter"),
            ("POST", "/sleep", {"level": 1}, 400, "unknown_field"),
            ("GET", "/sleep", None, 405, "method_not_allowed"),
            ("POST", "/status", None, 405, "method_not_allowed"),
            ("GET", "/release", None, 404, "not_found"),
        ]
        for method, path, body, want, error in cases:
            code, r, headers = curl(s.url + path, method, body)
            assert (code, r.get("error") if isinstance(r, dict) else r) == (want, error), \
                "%s %s %r: %d %r" % (method, path, body, code, r)
            assert r["ok"] is False and r["message"], r
            if want == 405:
                assert re.search(r"(?im)^Allow: (GET|POST)", headers), headers
        code, r, _ = post(s, "/release_memory_occupation", {"tags": ["weights", "t000"]})
        assert [p["pid"] for p in r["processes"]] == [a.pid] and str(a.pid) in r["message"], r
        # Too large, announced (Content-Length) or not (chunked).
        code, r, _ = curl(s.url + "/release_memory_occupation", "POST", raw=big)
        assert (code, r["error"]) == (413, "body_too_large"), r
        code, r, _ = curl(s.url + "/release_memory_occupation", "POST", raw=big,
                          headers=["Transfer-Encoding: chunked"])
        assert (code, r["error"]) == (413, "body_too_large"), r
        assert a.probe() == b.probe() == "weights=mapped kv_cache=mapped"
        assert (change_counts(a.pid), change_counts(b.pid)) == before, "a request reached a process"
        s.stop()
    finally:
        a.quit()
        b.quit()


def test_a_second_change_while_one_runs_is_409():
    open(HOLD, "w").close()
    a = Tenant(FAKECUDA_HOLD="cuMemUnmap:" + HOLD)
    s = Serve()
    first = None
    try:
        first = subprocess.Popen(["curl", "-sS", "--max-time", str(GUARD), "-w", "\n%{http_code}",
                                  "-X", "POST", s.url + "/release_memory_occupation", "--data",
                                  '{"tags":["weights"]}'], stdout=subprocess.PIPE, text=True)
        wait_for("the release running in the process", lambda: hello(a.pid)["running"] is not None)
        before = change_counts(a.pid)
        for path in ("/resume_memory_occupation", "/sleep?level=1", "/wake_up",
                     "/release_memory_occupation"):
            code, r, _ = post(s, path, {"tags": ["kv_cache"]} if "occupation" in path else None)
            assert (code, r["error"]) == (409, "busy"), (path, code, r)
            assert "/release_memory_occupation" in r["message"], r
        assert change_counts(a.pid) == before
        os.unlink(HOLD)
        out = first.communicate(timeout=GUARD)[0]
        assert out.strip().endswith("200"), out
        assert a.probe() == "weights=released kv_cache=mapped"
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        s.stop()
    finally:
        if os.path.exists(HOLD):
            os.unlink(HOLD)
        if first and first.poll() is None:
            first.kill()
        a.quit()


def test_one_process_failing_is_reported_by_pid():
    # b's first host registration fails: its staged pause finds no host
    # memory and releases nothing; a's succeeds.
    a, b = Tenant("g"), Tenant("g", FAKECUDA_FAIL="cuMemHostRegister:1")
    s = Serve("--group", "g")
    try:
        code, r, _ = post(s, "/release_memory_occupation", {"tags": ["weights"], "stage_to_cpu": True})
        assert (code, r["error"], r["sent"]) == (502, "process_failed", True), r
        by_pid = {p["pid"]: p for p in r["processes"]}
        assert by_pid[a.pid]["ok"] is True and by_pid[b.pid]["ok"] is False, r
        assert by_pid[b.pid]["error"] == "ENOMEM", r
        assert ("pid %d: ENOMEM" % b.pid) in r["message"] and "1 of 2" in r["message"], r
        assert a.probe() == "weights=released kv_cache=mapped"
        assert b.probe() == "weights=mapped kv_cache=mapped"
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        assert a.ask("check") == b.ask("check") == "ok"
        text = get(s, "/metrics")[1]
        assert sample(text, "memctl_requests_total", pid=b.pid, verb="pause", result="ENOMEM") == 1
        s.stop()
    finally:
        a.quit()
        b.quit()


def test_failed_resume_is_counted():
    # 6 allocations at start; the 7th cuMemCreate is the resume's first.
    a = Tenant(FAKECUDA_FAIL="cuMemCreate:7")
    s = Serve()
    try:
        assert post(s, "/release_memory_occupation", {"tags": ["weights"], "stage_to_cpu": True})[0] == 200
        code, r, _ = post(s, "/resume_memory_occupation", {"tags": ["weights"]})
        assert (code, r["processes"][0]["error"]) == (502, "ENOMEM"), r
        text = get(s, "/metrics")[1]
        assert sample(text, "memctl_resume_failures_total", pid=a.pid) == 1, text
        assert sample(text, "memctl_requests_total", pid=a.pid, verb="resume", result="ENOMEM") == 1
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        assert a.ask("check") == "ok", "staged contents lost by a failed resume"
        s.stop()
    finally:
        a.quit()


def test_a_stopped_process_costs_its_timeout_and_nothing_is_sent():
    a, b = Tenant("g"), Tenant("g")
    s = Serve("--group", "g", "--timeout", "2")
    try:
        before = change_counts(a.pid)
        os.kill(b.pid, signal.SIGSTOP)
        code, r, _ = post(s, "/release_memory_occupation", {"tags": ["weights"]})
        assert (code, r["error"], r["sent"]) == (504, "target_unreachable", False), r
        assert ("pid %d: ETIMEDOUT" % b.pid) in r["message"], r
        assert a.probe() == "weights=mapped kv_cache=mapped"
        assert change_counts(a.pid) == before, "something was sent"
        code, r, _ = get(s, "/status")
        by_pid = {p["pid"]: p for p in r["processes"]}
        assert code == 504 and by_pid[a.pid]["ok"] and by_pid[b.pid]["error"] == "ETIMEDOUT", r
        assert get(s, "/is_sleeping")[0] == 504
        code, text, _ = get(s, "/metrics")
        assert code == 200 and promtool(text)[0] == 0, text
        assert sample(text, "memctl_up", pid=b.pid) == 0 and sample(text, "memctl_up", pid=a.pid) == 1
        os.kill(b.pid, signal.SIGCONT)
        assert post(s, "/release_memory_occupation", {"tags": ["weights"]})[0] == 200
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        s.stop()
    finally:
        a.quit()
        b.quit()


def test_a_process_wedged_in_a_change_costs_its_timeout():
    open(HOLD, "w").close()
    a = Tenant(FAKECUDA_HOLD="cuMemUnmap:" + HOLD)
    s = Serve("--timeout", "2")
    try:
        code, r, _ = post(s, "/release_memory_occupation", {"tags": ["weights"]})
        assert (code, r["sent"]) == (504, True), r
        step = r["processes"][0]["steps"][0]
        assert step["error"] == "ETIMEDOUT" and step["outcome"] == "unknown", r
        os.unlink(HOLD)
        wait_for("the request to end", lambda: hello(a.pid)["running"] is None)
        # Whatever became of it, the state is whole.
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        assert a.probe() == "weights=mapped kv_cache=mapped"
        s.stop()
    finally:
        if os.path.exists(HOLD):
            os.unlink(HOLD)
        a.quit()


def test_no_target():
    s = Serve("--group", "nobody")
    a = Tenant()
    try:
        code, r, _ = post(s, "/release_memory_occupation")
        assert (code, r["error"]) == (503, "no_target"), r
        assert get(s, "/is_sleeping")[0] == 503
        code, r, _ = get(s, "/status")
        assert (code, r["targets"], r["processes"]) == (200, 0, []), r
        code, text, _ = get(s, "/metrics")
        assert code == 200 and sample(text, "memctl_serve_targets") == 0
        assert sample(text, "memctl_up") is None and promtool(text)[0] == 0
        assert a.probe() == "weights=mapped kv_cache=mapped"
        s.stop()
    finally:
        a.quit()


def plant_stale(group):
    """A socket nobody listens on, with its .info naming `group`, left by
    an earlier process whose pid is now ours (we are alive)."""
    sock = os.path.join(RUN, "%d.sock" % os.getpid())
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()
    info = os.path.join(RUN, "%d.info" % os.getpid())
    with open(info, "w") as f:
        f.write("group=%s\ncommand=gone\n" % group)
    return sock, info


def test_a_stale_socket_is_no_target():
    # It failed every endpoint (ECONNREFUSED): status 502, and no change
    # could be sent to the live processes.
    a = Tenant("g")
    s = Serve("--group", "g")
    try:
        sock, info = plant_stale("g")
        code, r, _ = get(s, "/status")
        assert (code, r["targets"]) == (200, 1), r
        assert not os.path.exists(sock) and not os.path.exists(info)
        plant_stale("g")
        code, r, _ = post(s, "/release_memory_occupation", {"tags": ["weights"]})
        assert (code, r["targets"]) == (200, 1), r
        assert a.probe() == "weights=released kv_cache=mapped"
        plant_stale("g")
        code, text, _ = get(s, "/metrics")
        assert code == 200 and sample(text, "memctl_serve_targets") == 1, text
        assert sample(text, "memctl_up", pid=os.getpid()) is None, text
        assert post(s, "/resume_memory_occupation", {"tags": ["weights"]})[0] == 200
        a.quit()
        plant_stale("g")
        code, r, _ = post(s, "/resume_memory_occupation")
        assert (code, r["error"]) == (503, "no_target"), r
        assert not os.path.exists(sock)
        s.stop()
    finally:
        a.quit()
        for left in ("%d.sock" % os.getpid(), "%d.info" % os.getpid()):
            if os.path.exists(os.path.join(RUN, left)):
                os.unlink(os.path.join(RUN, left))


def test_a_socket_directory_others_may_write_is_refused():
    a = Tenant()
    s = Serve()
    try:
        os.chmod(RUN, 0o777)
        code, r, _ = post(s, "/release_memory_occupation")
        assert (code, r["error"]) == (500, "socket_dir_refused"), r
        assert get(s, "/metrics")[0] == 500
        os.chmod(RUN, 0o700)
        assert a.probe() == "weights=mapped kv_cache=mapped"
        assert get(s, "/status")[0] == 200
        s.stop()
    finally:
        os.chmod(RUN, 0o700)
        a.quit()


def test_token():
    a = Tenant()
    s = Serve(MEMCTL_SERVE_TOKEN="s3cret-token")
    try:
        for headers in ([], ["Authorization: Bearer wrong"], ["Authorization: Basic s3cret-token"],
                        ["Authorization: Bearer s3cret-token-and-more"]):
            for method, path in (("POST", "/sleep"), ("GET", "/metrics"), ("GET", "/nothing")):
                code, r, hdr = curl(s.url + path, method, headers=headers)
                assert (code, r["error"]) == (401, "unauthorized"), (headers, path, r)
                assert "WWW-Authenticate: Bearer" in hdr, hdr
        assert a.probe() == "weights=mapped kv_cache=mapped"
        code, r, _ = get(s, "/status", headers=["Authorization: Bearer s3cret-token"])
        assert code == 200, r
        s.stop()
        path = os.path.join(WORK, "token")
        with open(path, "w") as f:
            f.write("from-a-file\n")
        s = Serve("--token-file", path)
        assert get(s, "/is_sleeping", headers=["Authorization: bearer from-a-file"])[0] == 200
        assert get(s, "/is_sleeping")[0] == 401
        s.stop()
    finally:
        a.quit()


def refused(args, env=None, want=None):
    r = subprocess.run([os.path.join(BUILD, "memctl"), "serve"] + args, capture_output=True,
                       text=True, env=env_for(**(env or {})), timeout=GUARD)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    assert want in r.stderr, r.stderr
    assert "listening" not in r.stdout


def test_listening_is_careful():
    refused(["--listen", "0.0.0.0:0"], want="without a token")
    refused(["--listen", "[::]:0"], want="without a token")
    refused(["--token", "x"], want="visible to every user")
    refused(["--token-file", "/nonexistent"], want="/nonexistent")
    path = os.path.join(WORK, "token2")
    with open(path, "w") as f:
        f.write("t\n")
    refused(["--token-file", path], env={"MEMCTL_SERVE_TOKEN": "u"}, want="give one")
    refused(["--listen", "localhost:80"], want="numeric")
    refused(["--level1-stage", ""], want="--level1-stage")
    # As the CLI's: an empty group would serve every process started
    # without one (a script's unset variable).
    refused(["--group", ""], want="group name")
    refused(["-g", "a/b"], want="group name")
    s = Serve("--listen", "0.0.0.0:0", MEMCTL_SERVE_TOKEN="t")
    port = s.url.rsplit(":", 1)[1]
    code, _, _ = curl("http://127.0.0.1:%s/status" % port, headers=["Authorization: Bearer t"])
    assert code == 200
    s.stop()
    r = subprocess.run([os.path.join(BUILD, "memctl"), "-g", "x", "serve"], capture_output=True,
                       text=True, env=env_for(), timeout=GUARD)
    assert r.returncode == 2 and "serve comes first" in r.stderr, r.stderr


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]

os.mkdir(RUN, 0o700)
try:
    for t in TESTS:
        try:
            t()
            passed += 1
            print("  ok   " + t.__name__, flush=True)
        except Exception:
            failed += 1
            print("  FAIL " + t.__name__, flush=True)
            traceback.print_exc()
            log = os.path.join(WORK, "serve.log")
            if os.path.exists(log):
                print("--- memctl serve's log:\n" + open(log).read())
        finally:
            if os.path.exists(os.path.join(WORK, "serve.log")):
                os.unlink(os.path.join(WORK, "serve.log"))
finally:
    shutil.rmtree(WORK, ignore_errors=True)
print("http: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
