"""End-to-end smoke test of the Space (spaces/facerec-demo): launch on 127.0.0.1, drive it with gradio_client, screenshot it.

    python scripts/space_smoke.py                       # model: $FACEREC_MODEL, else see below
    python scripts/space_smoke.py --screenshot out.png  # plus a headless-Chromium screenshot (needs `chromium`)
    python scripts/space_smoke.py --browser-only --screenshot out.png   # CI: page loads and renders (any machine)

With the sample photos of ../shared/data/samples it verifies a same pair (obama / obama2) and a different pair
(obama / biden), builds a gallery (obama3, biden2) and identifies obama.jpg; with no model named it converts the
research-only MobileFaceNet checkpoint of ../shared/models into a TEMPORARY folder (deleted at exit, never in the
repo) so the scores mean something. Without ../shared it checks start-up, the friendly errors and the page only.
Prints start-up time and verification latency; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_FACEREC_SHARED", REPO.parent / "shared"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=15000",
                  "--hide-scrollbars"]


def load_app_module():
    """spaces/facerec-demo/app.py as a module (its folder is not a package)."""
    spec = importlib.util.spec_from_file_location("facerec_space_app", REPO / "spaces" / "facerec-demo" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _chromium(url: str, *extra: str) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:  # a fresh profile every time
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                              check=False, capture_output=True, text=True, timeout=120)


def screenshot(url: str, path: Path, size: str = "1280,1500") -> Path:
    """Load ``url`` in headless Chromium, check the rendered page holds the app, and save a PNG screenshot.

    Raises:
        RuntimeError: the rendered DOM lacks the app's title and tabs, or no screenshot was written.
    """
    dom = _chromium(url, "--dump-dom").stdout
    missing = [text for text in ("Face recognition with", "Verify", "Identify", "Bias dashboard", "Model") if text not in dom]
    if missing:
        raise RuntimeError(f"the page rendered by chromium lacks {missing} ({len(dom)} characters of DOM)")
    path.parent.mkdir(parents=True, exist_ok=True)
    _chromium(url, f"--window-size={size}", f"--screenshot={path.resolve()}")
    if not path.is_file() or path.stat().st_size < 5000:
        raise RuntimeError(f"chromium wrote no usable screenshot at {path}")
    return path


def _model_dir(args, stack) -> str | None:
    if args.model or os.environ.get("FACEREC_MODEL"):
        return args.model or os.environ["FACEREC_MODEL"]
    checkpoint = SHARED / "models" / "mobilefacenet_casia" / "068.ckpt"
    if args.browser_only or not checkpoint.is_file():
        return None  # the Space's own offline default
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="space-smoke-model-"))
    subprocess.run([sys.executable, str(REPO / "scripts" / "convert_mobilefacenet.py"), "--checkpoint", str(checkpoint),
                    "--output", folder], check=True, capture_output=True)
    return folder


def main(argv=None) -> int:
    import contextlib

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hub id or folder (default: $FACEREC_MODEL, else the converted checkpoint)")
    parser.add_argument("--screenshot", type=Path, help="save a headless-Chromium screenshot here")
    parser.add_argument("--browser-only", action="store_true", help="only start the app and take the screenshot")
    parser.add_argument("--tab", default="Verify", help="tab shown in the screenshot (Verify, Identify, Bias dashboard, Model)")
    args = parser.parse_args(argv)
    samples = SHARED / "data" / "samples"
    have_samples = samples.is_dir() and not args.browser_only
    yunet = next((SHARED / "models" / "yunet").glob("*.onnx"), None) if (SHARED / "models" / "yunet").is_dir() else None
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with contextlib.ExitStack() as stack:
        model = _model_dir(args, stack)
        started = time.perf_counter()
        app_module = load_app_module()
        from hf_facerec.demo import load_demo

        imported = time.perf_counter()
        detector_model = os.environ.get("FACEREC_DETECTOR_MODEL") or (str(yunet) if yunet and not args.browser_only else None)
        # a named model without thresholds or results is uncalibrated (never calibrated on synthetic cartoons): the
        # checks compare scores (same pair > different pair) and the Verify text must say "UNCALIBRATED"
        demo = load_demo(model, detector_model=detector_model)
        loaded = time.perf_counter()
        # real sample photos only in the full check (a CI screenshot under outputs/ must not hold real faces)
        examples = (str(samples / "obama.jpg"), str(samples / "obama2.jpg")) if have_samples else None
        app = app_module.build_app(demo, examples=examples, tab=args.tab)
        app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **app_module.LAUNCH_KWARGS)
        ready = time.perf_counter()
        print(f"start-up: imports {imported - started:.1f} s, model + detector {loaded - imported:.1f} s, "
              f"Blocks + launch {ready - loaded:.1f} s, total {ready - started:.1f} s "
              f"(model {demo.model_source}, detector {type(demo.detector).__name__})")
        try:
            if not args.browser_only:
                _drive(app.local_url, samples if have_samples else None, demo, check, app_module.CUSTOM)
            if args.screenshot:
                began = time.perf_counter()
                shot = screenshot(app.local_url, args.screenshot)
                print(f"ok    screenshot {shot} ({shot.stat().st_size} bytes, {time.perf_counter() - began:.1f} s)")
        finally:
            app.close()
    print("FAILED: " + "; ".join(failures) if failures else "all checks passed")
    return 1 if failures else 0


def _oversized_request(url: str, check, megabytes: int = 150) -> None:
    """A 150 MB data: URL streamed in a JSON body (no Content-Length) -> 413 at the 20 MB request limit, memory flat."""
    import httpx

    def rss_mb() -> int:
        with open("/proc/self/status") as status:  # the server runs in this process
            return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) // 1024

    def body():
        yield b'{"data": ["data:image/png;base64,'
        chunk = b"A" * 2**20
        for _ in range(megabytes):
            yield chunk
        yield b'"]}'

    before, began = rss_mb(), time.perf_counter()
    response = httpx.post(url + "gradio_api/call/verify", content=body(), headers={"content-type": "application/json"},
                          timeout=60)
    grown = rss_mb() - before
    check(response.status_code == 413 and grown < 100,
          f"{megabytes} MB streamed JSON request -> {response.status_code} in {time.perf_counter() - began:.1f} s, "
          f"server memory +{grown} MB")


def _drive(url: str, samples: Path | None, demo, check, custom: str) -> None:
    """The gradio_client checks: friendly errors always; same/different pairs and identification with samples."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    with tempfile.TemporaryDirectory() as folder:
        bogus = Path(folder) / "notes.jpg"
        bogus.write_text("not an image")
        text = client.predict(handle_file(str(bogus)), handle_file(str(bogus)), custom, 0.3, 0, 0,
                              api_name="/verify")[-1]
        check("not an image" in text, f"non-image upload -> friendly message ({text[:60]!r})")
    _oversized_request(url, check)
    if samples is None:
        print("skip  sample-photo checks: no ../shared/data/samples")
        return
    point = demo.operating_points[0].label if demo.operating_points else custom
    threshold = demo.point(None).threshold  # the first calibrated point, else the labelled uncalibrated default
    scores = {}
    for name, other in (("same", "obama2.jpg"), ("different", "biden.jpg")):
        began = time.perf_counter()
        result = client.predict(handle_file(str(samples / "obama.jpg")), handle_file(str(samples / other)), point,
                                threshold, 0, 0, api_name="/verify")
        if not demo.calibrated:
            check("UNCALIBRATED" in result[-1] and "FAR" not in result[-1], f"{name} pair: uncalibrated threshold said so")
        elapsed = time.perf_counter() - began
        scores[name] = float(result[-1].split("similarity ")[1].split()[0])
        print(f"      {name} pair obama/{other}: {result[-1].splitlines()[0]} [{elapsed * 1000:.0f} ms through gradio_client]")
    check(scores["same"] > scores["different"], f"same-pair score {scores['same']:.3f} > different-pair {scores['different']:.3f}")
    began = time.perf_counter()
    demo.verify(samples / "obama.jpg", samples / "obama2.jpg")
    print(f"      in-process verification latency {1000 * (time.perf_counter() - began):.0f} ms (2 detections + 2 embeddings)")
    two = client.predict(handle_file(str(samples / "two_people.jpg")), handle_file(str(samples / "biden.jpg")), point,
                         threshold, 0, 0, api_name="/verify")[-1]
    check("2 faces found" in two, "two-face photo -> 'several faces' note")
    try:
        client.predict(handle_file(str(samples / "two_people.jpg")), handle_file(str(samples / "biden.jpg")), point,
                       threshold, 3, 0, api_name="/verify")
        check(False, "face number 3 of a two-face photo -> a clear error")
    except Exception as err:  # noqa: BLE001 - gradio_client's AppError carries the gr.Error message
        check("pick a face number from 1 to 2" in str(err), f"face number 3 of a two-face photo -> {str(err)[:70]!r}")
    info = client.predict([handle_file(str(samples / "obama3.jpg")), handle_file(str(samples / "biden2.jpg"))],
                          api_name="/build_gallery")
    check("2 identities" in info, f"gallery built: {info.splitlines()[0]}")
    ranking = client.predict(handle_file(str(samples / "obama.jpg")), 0, api_name="/identify")[-1]
    top = ranking.splitlines()[2].split("|")[2].strip()
    check(top == "obama", f"identify obama.jpg -> top-1 {top!r}")


if __name__ == "__main__":
    sys.exit(main())
