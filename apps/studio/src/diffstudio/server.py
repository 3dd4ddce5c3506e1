"""The studio's HTTP side: one static page and JSON endpoints around a ``JobQueue``.

Generation requests answer 202 with a job id at once; the page polls ``GET /api/jobs/{id}``
for the step, a preview of the current estimate, and finally the result. 503 when the queue
is full, 413 for a body over ``Limits.max_upload``, 403 for a path leaving the configured
folders, 400 for anything else the request got wrong, 404 for an unknown model or job.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from diffstudio.imaging import image_tensor, mask_tensor, open_png, png_urls
from diffstudio.jobs import Job, JobQueue, QueueFull
from diffstudio.media import fasta, residue_preview, spectrogram_urls, wav_url
from diffstudio.paths import Models, PathRefused, inside

STATIC = Path(str(resources.files("diffstudio") / "static"))


@dataclass(frozen=True)
class Limits:
    max_upload: int = 4 * 1024 * 1024  # bytes of one request body
    max_queued: int = 64  # waiting jobs before 503 (>= 50: a burst of 50 is all queued)
    max_kept: int = 64  # finished jobs whose results stay readable
    max_n: int = 64  # images of one request


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, by its Content-Length or, for a
    chunked body, as soon as the bytes read pass the limit. The body is read here (at most
    ``limit`` bytes are held) and handed on, so no handler sees a body over the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        parts, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > self.limit:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(parts), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps({"detail": f"the request is over {self.limit} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# requests


class SamplingFields(BaseModel):
    model: str
    seed: int = 0
    sampler: str | None = None
    steps: int | None = Field(None, ge=1, le=1000)
    guidance: float = Field(1.0, ge=0.0, le=50.0)


class ImageSample(SamplingFields):
    n: int = Field(4, ge=1)
    label: int | None = None
    # re-sampling: the previous slots, each a PNG data URL to keep or None to draw anew
    slots: list[str | None] | None = None


class ImageEdit(SamplingFields):
    image: str
    mask: str | None = None  # inpaint where white; without it: img2img with strength
    strength: float = Field(0.5, gt=0.0, le=1.0)
    label: int | None = None


class TextInfill(SamplingFields):
    text: str = Field(min_length=1, max_length=20_000)
    n: int = Field(1, ge=1, le=16)


class AudioSample(SamplingFields):
    n: int = Field(2, ge=1)
    label: str | None = None  # a class name; None: any
    speaker: str | None = None  # a speaker name; None: any


class AudioRedraw(SamplingFields):
    job: str  # a finished audio job whose clip is redrawn
    index: int = Field(0, ge=0)
    start: float = Field(ge=0.0)  # seconds: the span to draw again
    end: float = Field(gt=0.0)
    label: str | None = None
    speaker: str | None = None


class ProteinSample(SamplingFields):
    n: int = Field(4, ge=1)
    family: str | None = None
    length: int | None = Field(None, ge=1, le=2000)
    motif: str | None = None  # START-END:RESIDUES, 1-based, e.g. "8-12:ALYDY"


class AddModel(BaseModel):
    path: str


class Save(BaseModel):
    job: str
    folder: str


# the work each job does (in the worker thread)


def _image_conditions(pipe: Any, label: int | None, n: int) -> dict[str, Any]:
    return {} if label is None else {"labels": [label] * n}


def _image_progress(job: Job) -> Callable:
    def callback(step: Any, x: torch.Tensor, denoised: torch.Tensor) -> None:
        job.report(step.index + 1, step.total, png_urls(denoised))

    return callback


def _audio_progress(job: Job) -> Callable:
    def callback(step: Any, x: torch.Tensor, denoised: torch.Tensor) -> None:
        job.report(step.index + 1, step.total, spectrogram_urls(denoised))

    return callback


def _sampling(request: SamplingFields) -> dict[str, Any]:
    out: dict[str, Any] = {"seed": request.seed, "guidance": request.guidance}
    if request.sampler:
        out["sampler"] = request.sampler
    if request.steps is not None:
        out["steps"] = request.steps
    return out


def create_app(
    models: Models, *, out_dir: str | Path | None = None, limits: Limits = Limits()
) -> FastAPI:
    """The studio for ``models``; saved results go under ``out_dir`` (default: the first
    model root's ``studio-outputs/``). The worker starts and stops with the app."""
    jobs = JobQueue(max_queued=limits.max_queued, max_kept=limits.max_kept)
    out_root = Path(out_dir or models.roots[0] / "studio-outputs").resolve()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="diffuse studio", lifespan=lifespan)
    app.state.models, app.state.jobs, app.state.limits = models, jobs, limits
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, limit=limits.max_upload)

    @app.exception_handler(PathRefused)
    async def refused(request: Request, err: PathRefused) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=403)

    @app.exception_handler(QueueFull)
    async def full(request: Request, err: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "1"})

    def entry(name: str, domain: str) -> Any:
        try:
            return models.get(name, domain)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

    def submit(kind: str, work: Callable[[Job], dict]) -> JSONResponse:
        job = jobs.submit(kind, work)
        return JSONResponse({"id": job.id, "status": job.status}, status_code=202)

    def check_label(model: Any, label: int | None) -> None:
        classes = model.pipeline_info()["classes"]
        if label is not None and not 0 <= label < len(classes):
            raise HTTPException(
                400, f"label {label} is not a class of the model (0..{len(classes) - 1})"
            )

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/models")
    def list_models() -> list[dict]:
        return [e.describe() for e in models.entries.values()]

    @app.post("/api/models")
    def add_model(request: AddModel) -> dict:
        try:
            return models.add(request.path, from_page=True).describe()
        except FileNotFoundError as err:
            raise HTTPException(404, str(err)) from None
        except PathRefused:
            raise
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

    @app.post("/api/image/sample", status_code=202)
    def image_sample(request: ImageSample) -> JSONResponse:
        model = entry(request.model, "image")
        check_label(model, request.label)
        slots = request.slots or [None] * request.n
        if len(slots) > limits.max_n:
            raise HTTPException(400, f"at most {limits.max_n} images a request, got {len(slots)}")
        for i, slot in enumerate(slots):
            if slot is not None:
                try:
                    open_png(slot, f"slot {i}")
                except ValueError as err:
                    raise HTTPException(400, str(err)) from None
        redraw = [i for i, s in enumerate(slots) if s is None]

        def work(job: Job) -> dict:
            out = list(slots)
            if redraw:
                pipe = models.pipeline(model)
                images = pipe.sample(
                    len(redraw),
                    callback=_image_progress(job),
                    **_sampling(request),
                    **_image_conditions(pipe, request.label, len(redraw)),
                )
                for i, url in zip(redraw, png_urls(images), strict=True):
                    out[i] = url
            return {"images": out, "kept": [s is not None for s in slots], "seed": request.seed}

        return submit("sample", work)

    @app.post("/api/image/edit", status_code=202)
    def image_edit(request: ImageEdit) -> JSONResponse:
        """Inpaint where ``mask`` is white, or without a mask refine (img2img) with ``strength``."""
        model = entry(request.model, "image")
        check_label(model, request.label)
        info = model.pipeline_info()
        size = tuple(info["image_size"])
        channels = json.loads((model.path / "config.json").read_text())["unet"]["in_channels"]
        try:
            image = image_tensor(request.image, channels, size)[None]
            mask = None if request.mask is None else mask_tensor(request.mask, size)[None]
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

        def work(job: Job) -> dict:
            pipe = models.pipeline(model)
            kwargs = {
                "callback": _image_progress(job),
                **_sampling(request),
                **_image_conditions(pipe, request.label, 1),
            }
            if mask is None:
                result = pipe.edit(image, strength=request.strength, **kwargs)
            else:
                result = pipe.inpaint(image, mask, **kwargs)
            return {"images": png_urls(result), "masked": None if mask is None else int(mask.sum())}

        return submit("inpaint" if request.mask is not None else "refine", work)

    @app.post("/api/text/infill", status_code=202)
    def text_infill(request: TextInfill) -> JSONResponse:
        model = entry(request.model, "text")
        if "[MASK" not in request.text:
            raise HTTPException(400, "the text holds no [MASK] or [MASK*n] span to fill")

        def work(job: Job) -> dict:
            pipe = models.pipeline(model)
            tokenizer = pipe.tokenizer

            def callback(step: Any, x: torch.Tensor, denoised: torch.Tensor) -> None:
                job.report(step.index + 1, step.total, tokenizer.decode(x[0].tolist()))

            texts = pipe.infill([request.text] * request.n, callback=callback, **_sampling(request))
            return {"texts": texts}

        return submit("infill", work)

    spectra: OrderedDict[str, torch.Tensor] = OrderedDict()  # audio jobs' spectrograms

    def check_names(model: Any, request: Any) -> None:
        info = model.pipeline_info()
        for key, names in (("label", info["classes"]), ("speaker", info["speakers"])):
            value = getattr(request, key)
            if value is not None and value not in names:
                raise HTTPException(400, f"{key} {value!r} is not one of the model's: {names}")

    def audio_result(job: Job, pipe: Any, specs: torch.Tensor, records: list) -> dict:
        spectra[job.id] = specs.detach().cpu()
        while len(spectra) > limits.max_kept:
            spectra.popitem(last=False)
        rate = pipe.spectrogram.sample_rate
        clips = [
            {"wav": wav_url(w, rate), "spectrogram": png} | record
            for w, png, record in zip(
                pipe.to_waveform(specs), spectrogram_urls(specs), records, strict=True
            )
        ]
        return {"clips": clips, "seconds": pipe.spectrogram.seconds}

    def audio_conditions(pipe: Any, request: Any, n: int) -> tuple[dict, list]:
        from diffaudio.conditioning import sample_conditions

        config = pipe.model.config
        names = (request.label or "any", request.speaker or "any")
        _, ids, records = sample_conditions(config.label_names, config.speaker_names, *names, n)
        return ids, records

    @app.post("/api/audio/sample", status_code=202)
    def audio_sample(request: AudioSample) -> JSONResponse:
        model = entry(request.model, "audio")
        check_names(model, request)
        if request.n > limits.max_n:
            raise HTTPException(400, f"at most {limits.max_n} clips a request, got {request.n}")

        def work(job: Job) -> dict:
            pipe = models.pipeline(model)
            ids, records = audio_conditions(pipe, request, request.n)
            progress = _audio_progress(job)
            specs = pipe.sample(request.n, callback=progress, **_sampling(request), **ids)
            return audio_result(job, pipe, specs, records)

        return submit("audio", work)

    @app.post("/api/audio/redraw", status_code=202)
    def audio_redraw(request: AudioRedraw) -> JSONResponse:
        """Draw the span [start, end) seconds of a clip again; the rest is kept exactly."""
        model = entry(request.model, "audio")
        check_names(model, request)
        source = spectra.get(request.job)
        if source is None:
            raise HTTPException(404, f"no audio job {request.job!r} to redraw from")
        if request.index >= len(source):
            raise HTTPException(400, f"clip {request.index} is not one of {len(source)}")
        seconds = model.pipeline_info()["seconds"]
        if not request.start < request.end <= seconds:
            raise HTTPException(
                400,
                f"the span must satisfy 0 <= start < end <= {seconds} s, got "
                f"{request.start}-{request.end}",
            )
        clip = source[request.index : request.index + 1]

        def work(job: Job) -> dict:
            from diffaudio.pipeline import keep_mask

            pipe = models.pipeline(model)
            keep = keep_mask(pipe.spectrogram, gap=(request.start, request.end))
            ids, records = audio_conditions(pipe, request, 1)
            redraw = ~keep.reshape(1, 1, 1, -1)
            progress = _audio_progress(job)
            specs = pipe.inpaint(clip, redraw, callback=progress, **_sampling(request), **ids)
            return audio_result(job, pipe, specs, records) | {"kept_frames": int(keep.sum())}

        return submit("redraw", work)

    @app.post("/api/protein/sample", status_code=202)
    def protein_sample(request: ProteinSample) -> JSONResponse:
        """Sequences of a family, a length, around a motif (motif scaffolding: its residues are
        kept exactly at their positions)."""
        model = entry(request.model, "protein")
        families = model.pipeline_info()["families"]
        if request.family is not None and request.family not in families:
            raise HTTPException(400, f"family {request.family!r} is not one of {families}")
        if request.n > limits.max_n:
            raise HTTPException(400, f"at most {limits.max_n} sequences, got {request.n}")
        from diffprotein.conditioning import Motif

        try:
            motif = Motif.parse(request.motif) if request.motif else None
        except ValueError as err:
            raise HTTPException(400, str(err)) from None

        def work(job: Job) -> dict:
            pipe = models.pipeline(model)

            def callback(step: Any, x: torch.Tensor, denoised: torch.Tensor) -> None:
                job.report(step.index + 1, step.total, residue_preview(denoised))

            where = {"family": request.family, "length": request.length, "motif": motif}
            records = pipe.sample(request.n, callback=callback, **where, **_sampling(request))
            rows = [{"id": r.id, "sequence": str(r.seq)} for r in records]
            return {"sequences": rows, "fasta": fasta(records)}

        return submit("protein", work)

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(
                404, f"no job {job_id!r} (the studio keeps the last {limits.max_kept} results)"
            )
        return job.public(jobs.position(job) if job.status == "queued" else None)

    @app.post("/api/save")
    def save(request: Save) -> dict:
        """Write a finished job's images (PNG) or texts (JSONL) into a folder of the output
        root; the folder is a relative path that must stay inside it."""
        job = jobs.get(request.job)
        if job is None or job.result is None:
            raise HTTPException(404, f"no finished job {request.job!r}")
        out_root.mkdir(parents=True, exist_ok=True)
        folder = inside([out_root], request.folder, must_exist=False)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, url in enumerate(job.result.get("images") or []):
            path = folder / f"{job.id}-{i:02d}.png"
            open_png(url, "image").save(path)
            written.append(path)
        for i, clip in enumerate(job.result.get("clips") or []):
            path = folder / f"{job.id}-{i:02d}.wav"
            path.write_bytes(base64.b64decode(clip["wav"].split(",", 1)[1]))
            written.append(path)
        if "fasta" in job.result:
            path = folder / f"{job.id}.fasta"
            path.write_text(job.result["fasta"], encoding="utf-8")
            written.append(path)
        if "texts" in job.result:
            path = folder / f"{job.id}.jsonl"
            lines = [json.dumps({"index": i, "text": t}) for i, t in enumerate(job.result["texts"])]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            written.append(path)
        return {"written": [p.relative_to(out_root).as_posix() for p in written]}

    return app
