"""What a night records about where it ran."""

from __future__ import annotations

import subprocess

from harness.trial import sysinfo


def test_git_revision_names_the_commit_and_local_changes(tmp_path):
    assert sysinfo.git_revision(str(tmp_path)) == ""  # not a git work tree

    def git(*args):
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "train.py").write_text("lr = 0.1\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    commit = git("rev-parse", "HEAD")
    assert sysinfo.git_revision(str(tmp_path)) == commit
    (tmp_path / "train.py").write_text("lr = 0.2\n")
    assert sysinfo.git_revision(str(tmp_path)) == f"{commit}+dirty"


def test_environment_lists_versions_and_the_tensorflow_build():
    env = sysinfo.environment()
    assert env["versions"]["tensorflow"] and env["versions"]["mlxtend"]
    assert "is_cuda_build" in env["tf_build"]
    assert isinstance(env["gpus"], list) and env["host"]
