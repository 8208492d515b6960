"""HTML printed to an A4 PDF by headless Chromium: the one printer of Ombre's reports
(the maturity report, api/maturity_report.py; the shift report, api/shift_report.py).

Chromium, rather than a PDF library: the PDF is then the very page the HTML report
shows in a browser (the tests drive the same Chromium), with no second layout engine to
keep in step, and no new dependency (WeasyPrint would bring Pango and cairo). The pages
are our own escaped HTML with no script or remote file, so Chromium runs without its
sandbox, which needs user namespaces a hardened service may not have."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

PDF_TIMEOUT_S = 60.0
_printing = threading.Lock()  # one Chromium at a time: it takes ~200 MB on a Pi


class PdfError(RuntimeError):
    """No Chromium to print with, another report being printed, or Chromium failed."""


def chromium() -> str | None:
    """The Chromium binary on PATH, if any."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome")) if p), None)


def pdf(html_text: str, *, wait: bool = False) -> bytes:
    """`html_text` printed to an A4 PDF (the page's own @page rule may say otherwise).

    Any thread may call it; at most one print runs at a time. With `wait` false (a
    request, a command) PdfError at once if another print runs; with `wait` true (the
    reports made at each shift's end) it waits up to PDF_TIMEOUT_S for it. PdfError too if
    Chromium is missing or fails."""
    binary = chromium()
    if binary is None:
        raise PdfError("printing a PDF needs Chromium (Debian: apt install chromium); "
                       "the HTML report prints from any browser")
    if not _printing.acquire(blocking=wait, timeout=PDF_TIMEOUT_S if wait else -1):
        raise PdfError("another report is being printed; try again in a moment")
    try:
        with tempfile.TemporaryDirectory(prefix="ombre-report-") as tmp:
            page, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
            page.write_text(html_text, encoding="utf-8")
            try:
                done = subprocess.run(
                    [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--user-data-dir={tmp}/profile",
                     "--no-pdf-header-footer", f"--print-to-pdf={out}", page.as_uri()],
                    capture_output=True, text=True, timeout=PDF_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired as exc:
                raise PdfError(f"Chromium did not print within {PDF_TIMEOUT_S:g} s") from exc
            if not out.is_file() or out.stat().st_size == 0:
                tail = done.stderr.strip().splitlines()[-3:]
                raise PdfError(f"Chromium could not print the report (exit "
                               f"{done.returncode}): {' '.join(tail)}")
            return out.read_bytes()
    finally:
        _printing.release()
