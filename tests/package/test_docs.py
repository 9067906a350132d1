"""The documentation builds without a broken link or a missing page, and README's links and
picture point at files that exist."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_docs_build_strictly(tmp_path):
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                            "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "developer" / "architecture" / "index.html").is_file()


def test_readme_links_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
               if not t.startswith(("http://", "https://"))]
    assert targets and [t for t in targets if not (ROOT / t).exists()] == []
