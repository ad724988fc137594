"""Private directories: what another local user can prepare is refused, never followed."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from js_host.exceptions import ConfigError
from js_host.private_dir import PrivateDir
from tests.support.other_user import other_uid, requires_root, run_as_other, shared_tmp

OPTS = {"what": "test directory", "setting": "TEST_DIR"}


def test_creates_missing_parents_private_and_reopens(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "run"
    with PrivateDir.open(str(path), **OPTS) as private:
        assert private.path == str(path)
        private.write_atomic("secret", b"value")
    for folder in (path, path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with PrivateDir.open(str(path), create=False, **OPTS) as private:
        fd = private.open_file("secret")
        with os.fdopen(fd, "rb") as fh:
            assert fh.read() == b"value"
        assert private.listdir() == ["secret"]


def test_missing_without_create(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        PrivateDir.open(str(tmp_path / "none"), create=False, **OPTS)


def test_a_folder_others_can_read_is_refused(tmp_path) -> None:
    path = tmp_path / "open"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    with pytest.raises(ConfigError, match=r"accessible by other users \(mode 755\).*chmod 700.*TEST_DIR"):
        PrivateDir.open(str(path), **OPTS)


def test_links_inside_are_never_followed(tmp_path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    with PrivateDir.open(str(tmp_path / "run"), **OPTS) as private:
        os.symlink(target, private.join("secret"))
        with pytest.raises(OSError) as info:
            private.open_file("secret", os.O_WRONLY | os.O_TRUNC)
        assert info.value.errno == errno.ELOOP
        private.write_atomic("secret", b"new")  # replaces the link itself
        assert not os.path.islink(private.join("secret"))
    assert target.read_bytes() == b"keep"


def test_temp_names_are_random_and_exclusive(tmp_path) -> None:
    with PrivateDir.open(str(tmp_path / "run"), **OPTS) as private:
        names = set()
        for _ in range(20):
            fd, name = private.create_temp(".tmp-")
            os.close(fd)
            names.add(name)
        assert len(names) == 20


def test_remove_tree_does_not_follow_links(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"x")
    with PrivateDir.open(str(tmp_path / "run"), **OPTS) as private, private.subdir("ns") as ns:
        ns.write_atomic("entry", b"1")
        os.symlink(outside, ns.join("link"))
        assert private.remove_tree("ns") == 2  # the entry and the link itself
        assert private.listdir() == []
    assert (outside / "precious").read_bytes() == b"x"


@requires_root
def test_a_link_planted_by_another_user_is_refused() -> None:
    with shared_tmp() as shared:
        victim_target = shared / "victim-target"
        result = run_as_other(
            "import os, sys; os.mkdir(sys.argv[2], 0o777); os.chmod(sys.argv[2], 0o777); "
            "os.symlink(sys.argv[2], sys.argv[1])",
            str(shared / "js-host-0"),
            str(shared / "attacker-dir"),
        )
        assert result.returncode == 0, result.stderr
        with pytest.raises(ConfigError, match=r"symbolic link.*Remove it, or set TEST_DIR"):
            PrivateDir.open(str(shared / "js-host-0"), **OPTS)
        assert list((shared / "attacker-dir").iterdir()) == []
        assert not victim_target.exists()


@requires_root
def test_a_folder_made_by_another_user_is_refused() -> None:
    with shared_tmp() as shared:
        result = run_as_other("import os, sys; os.mkdir(sys.argv[1], 0o700)", str(shared / "js-host-0"))
        assert result.returncode == 0, result.stderr
        with pytest.raises(ConfigError, match=rf"belongs to uid {other_uid()}, not to you"):
            PrivateDir.open(str(shared / "js-host-0"), **OPTS)


@requires_root
@pytest.mark.parametrize("via_link", [False, True])
def test_a_parent_that_another_user_controls_is_refused(via_link: bool) -> None:
    with shared_tmp() as shared:
        # The other user owns a folder on the way (or a link on the way to one of hers).
        code = "import os, sys; os.mkdir(sys.argv[1], 0o755)"
        if via_link:
            code += "; os.symlink(sys.argv[1], sys.argv[2])"
        result = run_as_other(code, str(shared / "hers"), str(shared / "link"))
        assert result.returncode == 0, result.stderr
        parent = shared / ("link" if via_link else "hers")
        with pytest.raises(ConfigError, match=rf"the folder '{shared}/hers' above it belongs to uid"):
            PrivateDir.open(str(parent / "js-host"), **OPTS)
        assert not (shared / "hers" / "js-host").exists()


@requires_root
def test_a_world_writable_parent_that_is_not_sticky_is_refused() -> None:
    with shared_tmp() as shared:
        loose = shared / "loose"
        loose.mkdir()
        loose.chmod(0o777)
        with pytest.raises(ConfigError, match=r"can be changed by other users \(mode 777, not sticky\)"):
            PrivateDir.open(str(loose / "js-host"), **OPTS)
        # The sticky /tmp-like parent itself is fine.
        with PrivateDir.open(str(shared / "js-host"), **OPTS) as private:
            assert private.path == str(shared / "js-host")
