"""The resource sampler on the real process tree: forked workers' memory counts, the thread samples."""

from __future__ import annotations

import multiprocessing
import time

from airflow_batch_provider.monitoring import ResourceSampler


def hold_memory(ready, done):
    block = bytearray(150 * 2**20)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    ready.set()
    done.wait(30)


def measure_a_fork(disk_path, results):
    """In a spawned process of its own, so other tests' children (servers, browsers) cannot join or leave the
    tree; the worker it measures is forked, as chunk workers are."""
    sampler = ResourceSampler(disk_path=disk_path, measure_pss=True)
    before = sampler.sample()
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=hold_memory, args=(ready, done))
    child.start()
    try:
        assert ready.wait(30)
        during = sampler.sample()
    finally:
        done.set()
        child.join(30)
    results.put((before, during, sampler.peak_rss_mb))


def test_rss_includes_forked_children_and_pss_is_smaller(tmp_path):
    ctx = multiprocessing.get_context(
        "spawn"
    )  # a fork of this threaded test process could hang on a held lock
    results = ctx.Queue()
    probe = ctx.Process(target=measure_a_fork, args=(str(tmp_path / "not-yet" / "out"), results))
    probe.start()
    before, during, peak = results.get(timeout=60)
    probe.join(30)
    assert probe.exitcode == 0
    assert before.processes == 1  # the probe alone: a tree of its own
    assert during.processes == before.processes + 1
    assert during.rss_mb - before.rss_mb > 140
    assert during.pss_mb is not None and during.pss_mb <= during.rss_mb  # shared forked pages counted once
    assert during.disk_free_mb is not None and during.disk_free_mb > 0  # nearest existing parent
    assert 0 <= during.system_memory_percent <= 100
    assert peak == during.rss_mb


def test_thread_delivers_samples_until_stopped():
    got = []
    with ResourceSampler(0.05, callbacks=[got.append]) as sampler:
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    count = len(got)
    time.sleep(0.2)
    assert count >= 3 and len(got) == count  # stopped
    assert sampler.latest is not None and sampler.latest.disk_free_mb is None  # no path: not sampled
    assert got[-1]["cpu_percent"] >= 0 and got[-1].to_dict()["rss_mb"] > 0
