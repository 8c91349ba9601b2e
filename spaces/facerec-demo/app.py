"""hf_facerec demo Space: Verify, Identify, Bias dashboard, Model. A thin gradio Blocks layout.

The work is done by ``hf_facerec.demo`` (faces, verification, galleries, operating points), with
``hf_facerec.demo.uploads`` (gallery zips) and ``hf_facerec.demo.dashboard`` (bias charts and tables). Handlers run with
``preprocess=False``: they get gradio's raw upload records, so a non-image or oversized upload reaches our own
checks (a friendly message) instead of failing inside gradio, and each temporary upload file is deleted as soon as
it has been read.

Run: ``python app.py`` (``FACEREC_MODEL`` = Hub id or folder; ``FACEREC_DETECTOR_MODEL`` = a YuNet ONNX file).
"""

from __future__ import annotations

import functools
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from hf_facerec.demo import UNCALIBRATED_THRESHOLD, FaceIndexError, FaceRecDemo, SpaceInputError, load_demo
from hf_facerec.demo import dashboard as dash
from hf_facerec.demo.examples import write_examples
from hf_facerec.demo.request_limits import request_limit_middleware
from hf_facerec.demo.uploads import MAX_UPLOAD_BYTES, MAX_ZIP_BYTES, delete_uploads, gallery_items, keep_uploads, read_upload

#: Upload limit per file (20 MB), enforced by gradio before our code runs; read_upload holds data: URLs to it too.
MAX_FILE_SIZE = MAX_UPLOAD_BYTES
#: Request-body limits (413 beyond, before the body is read): a JSON request, inline data: URLs and all, may not
#: exceed one file's limit; one upload request (every file of a multi-file gallery) the gallery's zip budget.
MAX_REQUEST_BYTES = MAX_UPLOAD_BYTES
MAX_UPLOAD_REQUEST_BYTES = MAX_ZIP_BYTES
#: How the Space launches: the upload and request limits, and the message of an unexpected error shown (not a bare
#: "Error").
LAUNCH_KWARGS = {"max_file_size": MAX_FILE_SIZE, "show_error": True,
                 "app_kwargs": {"middleware": [request_limit_middleware(MAX_REQUEST_BYTES, MAX_UPLOAD_REQUEST_BYTES)]}}
CUSTOM = "Custom threshold (slider; uncalibrated)"
#: Derived images (annotated photos, crops, charts) live in gradio's cache for the browser to fetch: swept every
#: 5 minutes, removing files older than 10 minutes. Uploads themselves are deleted when each request ends.
DELETE_CACHE = (300, 600)


def _photo(payload, what: str) -> bytes:
    """An upload record (or an example's path) -> its bytes."""
    return read_upload(payload, what)[1]


def _friendly(n_outputs: int, keep: bool = False):
    """Turn a SpaceInputError into a gr.Warning toast plus the message in the handler's last (text) output; the
    other outputs are cleared (stale results would mislead) or, with ``keep``, left as they are. A bad face number
    is a wrong control value, like gradio's own range checks: a gr.Error, the results on screen left as they are.
    Every uploaded file among the arguments is deleted when the handler is done, whatever the outcome."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args):
            try:
                return fn(*args)
            except FaceIndexError as err:
                raise gr.Error(str(err), title="Face number", print_exception=False) from err  # a user error: no log traceback
            except SpaceInputError as err:
                gr.Warning(str(err))
                rest = [gr.skip() if keep else None for _ in range(n_outputs - 1)]
                return (*rest, f"⚠️ {err}")
            finally:
                delete_uploads(*args)

        return run

    return wrap


TABS = ("Verify", "Identify", "Bias dashboard", "Model")


def build_app(demo: FaceRecDemo, examples: tuple[str, str] | None = None, tab: str = "Verify") -> gr.Blocks:
    """The four-tab Blocks app around a :class:`~hf_facerec.demo.FaceRecDemo`.

    ``examples``: two photo paths pre-filled in the Verify tab with their verification computed at build time (a
    finished result on the first screen; the smoke test's browser check uses it). ``tab``: the tab shown first.
    The Verify tab also offers the bundled synthetic faces (``hf_facerec.demo.examples``) as ``gr.Examples``.
    """
    if tab not in TABS:
        raise ValueError(f"tab must be one of {TABS}, got {tab!r}")
    choices = [p.label for p in demo.operating_points] + [CUSTOM]

    @_friendly(5)
    def verify(image1, image2, choice, custom, face1, face2):
        point = float(custom) if choice == CUSTOM else choice
        first, second = _photo(image1, "the first photo"), _photo(image2, "the second photo")
        result = demo.verify(first, second, point, face1, face2)
        return (result.first.annotated(), result.second.annotated(), result.first.crop, result.second.crop, result.summary())

    @_friendly(2)
    def build_gallery(files):
        items, skipped = gallery_items(files or [])
        gallery = demo.build_gallery(items)
        gallery.skipped = skipped + gallery.skipped
        return gallery, gallery.summary()

    @_friendly(3)
    def identify(probe, gallery, face):
        found, ranked = demo.identify(_photo(probe, "the probe photo"), gallery, k=5, pick=face)
        rows = "\n".join(f"| {rank} | {name} | {score:.3f} |" for rank, (name, score) in enumerate(ranked, 1))
        note = f"\n\n{found.note}" if found.note else ""
        return found.annotated(), found.crop, f"| rank | identity | similarity |\n|---|---|---|\n{rows}{note}"

    def _show(reports, label):
        report = reports[label]
        return (*dash.bias_charts(report, title=label), dash.bias_tables(report))

    def _show_first(reports):
        """Outputs of a new set of reports: the report picker, the reports (session state), charts and table."""
        first = next(iter(reports))
        return gr.update(choices=list(reports), value=first), reports, *_show(reports, first)

    @_friendly(6, keep=True)
    def load_results(upload):
        return _show_first(dash.bias_reports(dash.parse_results(read_upload(upload, "the results file")[1])))

    @_friendly(6, keep=True)
    def run_bias(n_pairs, far):
        from hf_facerec.demo import evaluate_synthetic

        if not demo.synthetic:  # the button is hidden then; an API call gets the reason
            raise SpaceInputError("The synthetic bias evaluation is offered for the synthetic demo model only: drawn "
                                  "faces say nothing about a model for real photos. Load a results JSON instead.")
        try:
            summary = evaluate_synthetic(demo.embedder, n_pairs=int(n_pairs), far=float(far))
        except ValueError as err:  # e.g. a FAR the impostor pairs cannot resolve
            raise SpaceInputError(f"Cannot run this evaluation: {err}") from err
        reports = dash.bias_reports(summary)
        if not reports:
            raise SpaceInputError(f"Too few pairs for a bias report ({summary['results']['bias'].get('skipped')}); use more pairs.")
        return _show_first(reports)

    @_friendly(4, keep=True)
    def select_report(label, reports):
        if not reports or label not in reports:
            raise SpaceInputError("Load a results JSON or run an evaluation first.")
        return _show(reports, label)

    initial = dash.bias_reports(demo.results or {})
    first = next(iter(initial), None)
    charts = dash.bias_charts(initial[first], title=first) if first else [None, None, None]
    image = functools.partial(gr.Image, type="filepath", sources=["upload", "webcam", "clipboard"], height=320)

    with gr.Blocks(title="hf_facerec demo", delete_cache=DELETE_CACHE) as app:
        gr.Markdown(f"# Face recognition with `hf_facerec`\nModel: `{demo.model_source}`. Uploaded photos are processed "
                    "in memory and deleted after each request; galleries live only in your browser session.")
        with gr.Tabs(selected=tab):
            with gr.Tab("Verify", id="Verify"):
                with gr.Row():
                    first_photo, second_photo = examples or (None, None)
                    image1, image2 = image(first_photo, label="First photo"), image(second_photo, label="Second photo")
                gr.Markdown(dash.calibration_note(demo))
                with gr.Row():
                    calibrated = "threshold measured for a false accept rate" if demo.calibrated else "none calibrated for this model"
                    choice = gr.Dropdown(choices, value=choices[0], label=f"Operating point ({calibrated})")
                    custom = gr.Slider(-1.0, 1.0, value=UNCALIBRATED_THRESHOLD, step=0.01,
                                       label="Custom threshold (cosine; UNCALIBRATED: not measured for this model)")
                    face1 = gr.Number(0, precision=0, minimum=0, label="Face in photo 1 (0 = largest)")
                    face2 = gr.Number(0, precision=0, minimum=0, label="Face in photo 2 (0 = largest)")
                button = gr.Button("Verify", variant="primary")
                rows, labels = write_examples(demo.detector)
                if rows:  # synthetic faces only: nobody's photo ships with the Space
                    gr.Examples(rows, [image1, image2, face1, face2], label="Examples (synthetic faces, nobody's face)",
                                example_labels=labels, cache_examples=False)
                # the examples' result is computed once here, so the first screen shows a finished verification
                ready = verify(*examples, choices[0], UNCALIBRATED_THRESHOLD, 0, 0) if examples else (None,) * 5
                with gr.Row():
                    shown1, shown2 = gr.Image(ready[0], label="Faces found (1)", height=360), gr.Image(ready[1], label="Faces found (2)", height=360)
                    crop1 = gr.Image(ready[2], label="Aligned crop 1", height=160)
                    crop2 = gr.Image(ready[3], label="Aligned crop 2", height=160)
                verdict = gr.Markdown(ready[4])
                button.click(verify, [image1, image2, choice, custom, face1, face2], [shown1, shown2, crop1, crop2, verdict],
                             api_name="verify", preprocess=False)
            with gr.Tab("Identify", id="Identify"):
                gallery = gr.State(None)
                files = gr.File(file_count="multiple", file_types=["image", ".zip"],
                                label="1. Gallery: face images named after the person (alice_1.jpg) or a zip with one folder per person")
                build = gr.Button("Build gallery")
                gallery_info = gr.Markdown()
                build.click(build_gallery, [files], [gallery, gallery_info], api_name="build_gallery", preprocess=False)
                with gr.Row():
                    probe = image(label="2. Probe photo")
                    probe_face = gr.Number(0, precision=0, minimum=0, label="Face in the probe (0 = largest)")
                search = gr.Button("Identify", variant="primary")
                with gr.Row():
                    probe_shown, probe_crop = gr.Image(label="Faces found", height=360), gr.Image(label="Aligned crop", height=160)
                    ranking = gr.Markdown()
                search.click(identify, [probe, gallery, probe_face], [probe_shown, probe_crop, ranking], api_name="identify",
                             preprocess=False)
            with gr.Tab("Bias dashboard", id="Bias dashboard"):
                reports = gr.State(initial)
                with gr.Row():
                    results_file = gr.File(file_types=[".json"], label="Results JSON (hf-facerec evaluate / quickstart)")
                    with gr.Column(visible=demo.synthetic):  # synthetic figures for the synthetic model only
                        n_pairs = gr.Slider(200, 1000, value=300, step=20, label="Synthetic pairs")
                        far = gr.Dropdown([0.1, 0.05, 0.02], value=0.1, label="FAR of the global threshold")
                        run = gr.Button("Run a small bias evaluation (synthetic groups A, B, C)")
                picked = gr.Dropdown(list(initial), value=first, label="Report")
                with gr.Row():
                    bars = [gr.Image(value=c, label=name) for c, name in zip(charts, ("Accuracy", "FMR", "FNMR"))]
                table = gr.Markdown(dash.bias_tables(initial[first]) if first else "No bias report yet.")
                outputs = [picked, reports, *bars, table]
                results_file.upload(load_results, [results_file], outputs, api_name="load_results", preprocess=False)
                run.click(run_bias, [n_pairs, far], outputs, api_name="run_bias", preprocess=False)
                picked.change(select_report, [picked, reports], [*bars, table], api_name="select_report", preprocess=False)
            with gr.Tab("Model", id="Model"):
                gr.Markdown(dash.model_tab(demo))
    # gradio's cache is content-addressed: an upload equal to a default value (an example photo) is the same file,
    # which delete_uploads must then keep
    keep_uploads(path for block in app.blocks.values() for path in getattr(block, "keep_in_cache", ()))
    return app


def launch(demo: FaceRecDemo | None = None, **kwargs) -> gr.Blocks:
    """Build and launch the app with :data:`LAUNCH_KWARGS`; ``kwargs`` (added or overriding) go to ``Blocks.launch``.
    Middleware in ``kwargs["app_kwargs"]`` is added to, never replaces, the request limit."""
    app = build_app(demo or load_demo())
    extra = dict(kwargs.pop("app_kwargs", None) or {})
    extra["middleware"] = [*LAUNCH_KWARGS["app_kwargs"]["middleware"], *extra.get("middleware", ())]
    app.launch(**{**LAUNCH_KWARGS, **kwargs, "app_kwargs": {**LAUNCH_KWARGS["app_kwargs"], **extra}})
    return app


if __name__ == "__main__":
    launch()
