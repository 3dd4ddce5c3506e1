"""The studio under load: a burst of 50 concurrent requests from a bounded client against a real
uvicorn server on 127.0.0.1 — every request is answered, none is lost, memory stays bounded."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BURST = 50


def rss_mb() -> float:
    """This process's resident memory (the server runs in it), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def finish(server, ids, timeout=120.0) -> list[dict]:
    end, results = time.monotonic() + timeout, {}
    while len(results) < len(ids):
        assert time.monotonic() < end, f"{len(ids) - len(results)} jobs did not finish"
        for job_id in set(ids) - set(results):
            job = get(f"{server.url}/api/jobs/{job_id}")
            if job["status"] in ("done", "error"):
                results[job_id] = job
        time.sleep(0.05)
    return [results[i] for i in ids]


def burst(server, body: dict) -> list[tuple[int, dict]]:
    with ThreadPoolExecutor(max_workers=16) as pool:  # a bounded client
        return list(pool.map(lambda _: post(f"{server.url}/api/image/sample", body), range(BURST)))


def test_a_burst_of_50_requests_is_queued_whole_and_every_job_finishes(live_server):
    with live_server() as server:
        body = {"model": "image", "n": 1, "steps": 2}
        warm = post(f"{server.url}/api/image/sample", body)[1]["id"]
        finish(server, [warm])
        before = rss_mb()
        answers = burst(server, body)
        assert [code for code, _ in answers] == [202] * BURST
        ids = [answer["id"] for _, answer in answers]
        assert len(set(ids)) == BURST
        jobs = finish(server, ids)
        assert all(job["status"] == "done" and len(job["result"]["images"]) == 1 for job in jobs)
        assert rss_mb() - before < 150  # 50 results of a tiny model, not a leak


def test_past_the_queue_bound_requests_get_a_clear_503_and_none_is_lost(live_server):
    with live_server(max_queued=2, max_kept=8) as server:
        answers = burst(server, {"model": "image", "n": 4, "steps": 40})
        codes = [code for code, _ in answers]
        assert set(codes) <= {202, 503} and 503 in codes
        assert all("queue" in a["detail"] for code, a in answers if code == 503)
        accepted = [a["id"] for code, a in answers if code == 202]
        for job in finish(server, accepted):
            assert job["status"] == "done"
        jobs = server.server.config.app.state.jobs
        assert len(jobs) <= 8  # finished results beyond max_kept are forgotten
