"""What a study's worker processes do as they start: imports declared by the trainable, and silent
TensorFlow imports, without paying for TensorFlow when the trainable does not use it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def _python(code: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{tmp_path}", **env},
    )  # fmt: skip


def test_a_worker_imports_what_the_trainable_declares_and_never_tensorflow_otherwise(tmp_path):
    (tmp_path / "declared.py").write_text("import json\n")
    done = _python(
        """
        import sys
        from search.compute.devices import quiet_worker
        quiet_worker()
        print("declared" in sys.modules, "tensorflow" in sys.modules)
        """,
        tmp_path,
        TF_CONFIG_SEARCH_WORKER_IMPORTS="declared,a_space_file_module_workers_cannot_import",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_the_first_import_of_a_noisy_package_is_silent_and_a_failing_one_shows_why(tmp_path):
    (tmp_path / "noisy.py").write_text("import os\nos.write(2, b'C++ start-up chatter\\n')\n")
    (tmp_path / "broken.py").write_text("import os\nos.write(2, b'what went wrong\\n')\nraise ImportError('broken')\n")
    done = _python(
        """
        import sys
        from search.compute.devices import _QuietImport
        sys.meta_path.insert(0, _QuietImport("noisy"))
        sys.meta_path.insert(0, _QuietImport("broken"))
        import noisy
        print("imported")
        try:
            import broken
        except ImportError:
            print("failed")
        """,
        tmp_path,
    )
    assert done.stdout.split() == ["imported", "failed"]
    assert "chatter" not in done.stderr
    assert "what went wrong" in done.stderr
