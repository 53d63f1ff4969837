"""Process bookkeeping: a group is ended even when its members spawn more while dying."""

from __future__ import annotations

import os
import subprocess
import time

from fedids.deploy.proctrack import (
    GROUP_ENV,
    alive,
    group_members,
    group_tree,
    new_group_tag,
    terminate_group,
)

# On SIGTERM, start a copy of itself (with one generation less to go) in a new session, then
# exit: like a Ray raylet that starts its agents while being shut down. Each copy appears
# only after the previous one was signalled, so a fixed number of looks misses the last ones.
RESPAWNER = r"""
trap 'if [ "$GEN" -gt 0 ]; then GEN=$((GEN - 1)) setsid bash -c "$BODY" & fi; exit 0' TERM
while :; do sleep 0.05; done
"""


def test_terminate_group_ends_members_spawned_while_it_works() -> None:
    tag = new_group_tag()
    env = dict(os.environ, **{GROUP_ENV: tag, "GEN": "4", "BODY": RESPAWNER})
    first = subprocess.Popen(["bash", "-c", RESPAWNER], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not group_members(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(tag), "the first process did not start"
        survivors = terminate_group(tag, grace=2.0, quiet=1.0, bound=30.0)
        first.wait(5)
        assert survivors == []
        assert group_members(tag) == []  # five generations, each one ended
    finally:
        for pid, _ in group_members(tag):  # only if the assertion above failed
            os.kill(pid, 9)
        if first.poll() is None:
            first.kill()
            first.wait(5)


def test_terminate_group_leaves_kept_pids_and_returns_quickly_when_empty() -> None:
    tag = new_group_tag()
    env = dict(os.environ, **{GROUP_ENV: tag})
    kept = subprocess.Popen(["sleep", "60"], env=env)
    try:
        started = time.monotonic()
        assert terminate_group(tag, keep=[kept.pid], quiet=0.5) == []
        assert time.monotonic() - started < 5
        assert kept.poll() is None
    finally:
        kept.kill()
        kept.wait(5)


def test_terminate_group_ends_untagged_children_of_members() -> None:
    """A member's child with an environment of its own (no tag) goes with the group; a
    process outside the group with the same command line stays."""
    tag = new_group_tag()
    env = dict(os.environ, **{GROUP_ENV: tag})
    parent = subprocess.Popen(
        ["bash", "-c", "env -i sleep 61 & wait"], env=env, start_new_session=True
    )
    outsider = subprocess.Popen(["sleep", "61"])
    try:
        deadline = time.monotonic() + 10
        while len(group_tree(tag)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = group_tree(tag)
        assert len(tree) == 2 and len(group_members(tag)) == 1, (tree, group_members(tag))
        child = next(pid for pid, _ in tree if pid != parent.pid)
        assert terminate_group(tag, grace=2.0, quiet=0.5) == []
        parent.wait(5)
        assert not alive(child)
        assert outsider.poll() is None
    finally:
        for pid, _ in group_tree(tag):  # only if an assertion above failed
            os.kill(pid, 9)
        for proc in (parent, outsider):
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
