"""Model artifacts: an estimator and its fitted feature state, saved in a safe format.

An artifact is a folder (local, or any fsspec URL such as ``s3://`` where the matching
filesystem package is installed) holding:

- ``manifest.json``: the artifact format version, the model format, the estimator's
  class, the package versions that wrote it and the sha256 of every other file;
- the model file, in the safest format that fits the estimator:

  ============== ================= ==========================================
  format         file              used for
  ============== ================= ==========================================
  lightgbm-text  ``model.txt``     LightGBM models (LightGBM's own text format)
  skops          ``model.skops``   scikit-learn estimators (no code run on load)
  pickle         ``model.pkl``     anything else, only with ``allow_pickle=True``
  ============== ================= ==========================================

- ``features.json``: the fitted feature state (a JSON value, kept opaque here).

The registry stores the manifest's sha256, so one checksum covers every file. A local
artifact is written into a temporary sibling folder and renamed into place, so a
reader sees all of it or nothing; elsewhere the manifest is written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from headwater.errors import UserError

#: Version of the folder layout and manifest; a newer one cannot be read by this code.
ARTIFACT_FORMAT = 1
MANIFEST = "manifest.json"
FEATURES = "features.json"
FORMATS = ("lightgbm-text", "skops", "pickle")
_MODEL_FILE = {"lightgbm-text": "model.txt", "skops": "model.skops", "pickle": "model.pkl"}
# skops refuses every type it does not know; estimators' internals from these packages
# hold data, not code, so they are accepted. Anything else must be trusted by name.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")


class ArtifactError(UserError):
    """A model artifact cannot be written or read."""


class ArtifactMissingError(ArtifactError):
    """The artifact, or one of its files, is not where the registry says."""


class ArtifactCorruptError(ArtifactError):
    """A file of the artifact does not match its checksum, or cannot be decoded."""


class ArtifactFormatError(ArtifactError):
    """The artifact was written in a format this headwater cannot read."""


class UnsafeArtifactError(ArtifactError):
    """Reading the artifact would run code (pickle, unknown types) and the user did not opt in."""


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    """What a model version is made of: the fitted estimator and the fitted feature state."""

    estimator: Any
    feature_state: Any = None


@dataclass(frozen=True, slots=True)
class PackedArtifact:
    """An artifact serialised to files, ready to write; ``checksum`` is the manifest's sha256."""

    format: str
    files: dict[str, bytes]
    checksum: str
    manifest: dict[str, Any] = field(default_factory=dict)


class LightGBMModel:
    """A LightGBM model read from its text format, predicting like the estimator it was saved from.

    Regressors predict values; classifiers predict their class labels (``predict``)
    and probabilities (``predict_proba``). ``booster`` is the ``lightgbm.Booster``.
    """

    def __init__(self, booster: Any, classes: list[Any] | None = None, estimator_class: str = "") -> None:
        self.booster = booster
        self.classes_ = classes
        self.estimator_class = estimator_class

    def __repr__(self) -> str:
        return f"LightGBMModel({self.estimator_class or 'Booster'}, trees={self.booster.num_trees()})"

    def predict_proba(self, x: Any) -> Any:
        import numpy as np

        if self.classes_ is None:
            raise ArtifactError(f"{self.estimator_class or 'this LightGBM model'} is not a classifier")
        raw = np.asarray(self.booster.predict(x))
        if raw.ndim == 1:  # binary: the probability of the second class
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, x: Any) -> Any:
        import numpy as np

        if self.classes_ is None:
            return self.booster.predict(x)
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(x), axis=1)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _is_lightgbm(est: Any) -> bool:
    return isinstance(est, LightGBMModel) or type(est).__module__.split(".")[0] == "lightgbm"


def _lightgbm_text(est: Any) -> tuple[bytes, dict[str, Any]]:
    if isinstance(est, LightGBMModel):
        booster, classes, cls = est.booster, est.classes_, est.estimator_class
    else:
        booster = getattr(est, "booster_", est)  # an LGBMModel, or a Booster itself
        classes = getattr(est, "classes_", None)
        classes = None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]
        cls = _class_name(est)
    return booster.model_to_string().encode(), {"classes": classes, "estimator": cls}


def pack(artifact: ModelArtifact, *, format: str = "auto", allow_pickle: bool = False) -> PackedArtifact:
    """Serialise ``artifact``; ``format`` is ``auto`` (the safest that fits) or one of :data:`FORMATS`.

    ``auto`` picks ``lightgbm-text`` for LightGBM models, ``skops`` for scikit-learn
    estimators, and ``pickle`` for anything else only when ``allow_pickle`` is set.
    """
    est = artifact.estimator
    if format not in ("auto", *FORMATS):
        raise ArtifactError(f"unknown artifact format {format!r}", hint=f"use one of: auto, {', '.join(FORMATS)}")
    extra: dict[str, Any] = {"estimator": _class_name(est)}
    packages = {"python": platform.python_version(), "headwater": _version("headwater")}
    model: bytes | None = None
    chosen = format
    if format in ("auto", "lightgbm-text") and _is_lightgbm(est):
        model, more = _lightgbm_text(est)
        extra |= more
        chosen = "lightgbm-text"
        packages["lightgbm"] = _version("lightgbm")
    elif format == "lightgbm-text":
        raise ArtifactError(f"{_class_name(est)} is not a LightGBM model; it cannot be saved as lightgbm-text")
    if model is None and format in ("auto", "skops") and hasattr(est, "get_params"):
        import skops.io

        try:
            model = skops.io.dumps(est)
            chosen = "skops"
            packages |= {"skops": _version("skops"), "scikit-learn": _version("scikit-learn")}
        except Exception as exc:  # skops raises many kinds for objects it cannot represent
            if format == "skops" or not allow_pickle:
                raise ArtifactError(
                    f"skops cannot save {_class_name(est)}: {exc}",
                    hint="pass allow_pickle=True to save it with pickle (only you should load it)",
                ) from exc
    if model is None:
        if not allow_pickle:
            raise UnsafeArtifactError(
                f"no safe format saves {_class_name(est)} (lightgbm-text is for LightGBM, skops for scikit-learn)",
                hint="pass allow_pickle=True to save it with pickle; loading it will also need allow_pickle=True",
            )
        import pickle

        model = pickle.dumps(est, protocol=pickle.HIGHEST_PROTOCOL)
        chosen = "pickle"
    files = {_MODEL_FILE[chosen]: model, FEATURES: json.dumps(artifact.feature_state, sort_keys=True).encode()}
    manifest = {
        "artifact_format": ARTIFACT_FORMAT,
        "model_format": chosen,
        "model_file": _MODEL_FILE[chosen],
        "files": {name: _sha256(data) for name, data in sorted(files.items())},
        "packages": {k: v for k, v in packages.items() if v is not None},
        **extra,
    }
    raw = json.dumps(manifest, sort_keys=True, indent=1).encode()
    return PackedArtifact(chosen, files | {MANIFEST: raw}, _sha256(raw), manifest)


def _fs(uri: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    try:
        fs, path = url_to_fs(uri)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs
        raise ArtifactError(
            f"cannot open the artifact location {uri}: {exc}",
            hint="install the fsspec filesystem for this URL (s3fs for s3://, gcsfs for gs://)",
        ) from exc
    return fs, str(path)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def write(uri: str, packed: PackedArtifact) -> None:
    """Write ``packed`` at ``uri`` (a folder that must not exist yet).

    Locally: every file into a temporary sibling folder, fsync, then one rename, so
    readers never see half an artifact. Elsewhere: the manifest goes last.
    """
    fs, path = _fs(uri)
    if _is_local(fs):
        _write_local(path, packed)
        return
    if fs.exists(f"{path}/{MANIFEST}"):
        raise ArtifactError(f"an artifact already exists at {uri}", hint="artifacts are never overwritten")
    for name in sorted(packed.files, key=lambda n: n == MANIFEST):
        with fs.open(f"{path}/{name}", "wb") as out:
            out.write(packed.files[name])


def _write_local(path: str, packed: PackedArtifact) -> None:
    parent = os.path.dirname(path.rstrip("/")) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        for name, data in packed.files.items():
            with open(os.path.join(tmp, name), "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        try:
            os.rename(tmp, path)  # fails when path exists and is not empty: never overwrite
        except OSError as exc:
            raise ArtifactError(f"cannot put the artifact at {path}: {exc}",
                                hint="artifacts are never overwritten; remove the folder if it is a leftover") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save(uri: str, artifact: ModelArtifact, *, format: str = "auto", allow_pickle: bool = False) -> PackedArtifact:
    """Pack and write ``artifact`` at ``uri``; returns what was written (format, checksum)."""
    packed = pack(artifact, format=format, allow_pickle=allow_pickle)
    write(uri, packed)
    return packed


def load(
    uri: str,
    *,
    checksum: str | None = None,
    label: str | None = None,
    allow_pickle: bool = False,
    trusted: Iterable[str] = (),
) -> ModelArtifact:
    """Read the artifact at ``uri``, checking every file (see :func:`verify`), then decode it.

    Pickled models load only with ``allow_pickle=True``; skops models only when every
    type in them is scikit-learn's, NumPy's, SciPy's, skops' default-trusted, or in ``trusted``.
    """
    what = label or f"the artifact at {uri}"
    manifest, data = verify(uri, checksum=checksum, label=label)
    try:
        features = json.loads(data[FEATURES])
    except (KeyError, ValueError) as exc:
        raise ArtifactCorruptError(f"{what} is corrupt: its feature state cannot be read ({exc})") from exc
    model = data[manifest["model_file"]]
    return ModelArtifact(_decode(manifest["model_format"], model, manifest, what, allow_pickle, tuple(trusted)),
                         features)


def verify(
    uri: str, *, checksum: str | None = None, label: str | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read every file of the artifact at ``uri`` and check it; returns the manifest and the files.

    ``checksum`` is the manifest's expected sha256 (the registry's record of it);
    ``label`` names the artifact in errors (``model house_prices version 3``). Raises
    ArtifactMissingError, ArtifactCorruptError or ArtifactFormatError. Decodes nothing.
    """
    what = label or f"the artifact at {uri}"
    fs, path = _fs(uri)
    raw = _read(fs, path, MANIFEST, what, uri)
    if checksum is not None and _sha256(raw) != checksum:
        raise ArtifactCorruptError(
            f"{what} is corrupt: {MANIFEST} has sha256 {_sha256(raw)[:12]}..., the registry recorded "
            f"{checksum[:12]}... ({uri})",
            hint="the artifact was changed after registration; register the model again",
        )
    try:
        manifest = json.loads(raw)
        fmt, version, files = manifest["model_format"], manifest["artifact_format"], manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactCorruptError(f"{what} is corrupt: {MANIFEST} cannot be read ({exc})") from exc
    if not isinstance(version, int) or version > ARTIFACT_FORMAT or fmt not in FORMATS:
        raise ArtifactFormatError(
            f"{what} was written in artifact format {version} / model format {fmt!r}; this headwater reads "
            f"artifact format {ARTIFACT_FORMAT} with {', '.join(FORMATS)} (written by "
            f"headwater {manifest.get('packages', {}).get('headwater', '?')})",
            hint="upgrade headwater to load it, or retrain the model with this version",
        )
    if not isinstance(files, dict) or any("/" in n or "\\" in n or n.startswith(".") for n in files):
        raise ArtifactCorruptError(f"{what} is corrupt: {MANIFEST} lists files outside the artifact's folder")
    if manifest.get("model_file") not in files or FEATURES not in files:
        raise ArtifactCorruptError(f"{what} is corrupt: {MANIFEST} does not list the model and feature files")
    data = {}
    for name, digest in files.items():
        data[name] = _read(fs, path, name, what, uri)
        if _sha256(data[name]) != digest:
            raise ArtifactCorruptError(
                f"{what} is corrupt: {name} does not match its checksum in {MANIFEST} ({uri})",
                hint="the file was changed or truncated after it was written; register the model again",
            )
    return manifest, data


def _read(fs: Any, path: str, name: str, what: str, uri: str) -> bytes:
    try:
        with fs.open(f"{path}/{name}", "rb") as f:
            data: bytes = f.read()
            return data
    except FileNotFoundError as exc:
        raise ArtifactMissingError(
            f"{what} is missing: there is no {name} in {uri}",
            hint="the artifact was moved or deleted; restore it, or register the model again",
        ) from exc


def _decode(fmt: str, data: bytes, manifest: dict[str, Any], what: str, allow_pickle: bool,
            trusted: tuple[str, ...]) -> Any:
    if fmt == "lightgbm-text":
        import lightgbm

        try:
            booster = lightgbm.Booster(model_str=data.decode())
        except Exception as exc:  # LightGBM raises its own LightGBMError on bad text
            raise ArtifactCorruptError(f"{what} is corrupt: LightGBM cannot read model.txt ({exc})") from exc
        return LightGBMModel(booster, manifest.get("classes"), manifest.get("estimator", ""))
    if fmt == "skops":
        import skops.io

        try:
            untrusted = skops.io.get_untrusted_types(data=data)
        except Exception as exc:  # a damaged zip, or not skops at all
            raise ArtifactCorruptError(f"{what} is corrupt: skops cannot read model.skops ({exc})") from exc
        unknown = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES) and t not in trusted]
        if unknown:
            raise UnsafeArtifactError(
                f"{what} holds types that are not trusted: {', '.join(unknown)}",
                hint="if you trust where this artifact comes from, pass trusted=[...] with these type names",
            )
        return skops.io.loads(data, trusted=list(untrusted))
    if not allow_pickle:
        raise UnsafeArtifactError(
            f"{what} is a pickle, and loading a pickle runs whatever code it holds",
            hint="pass allow_pickle=True only if you trust who wrote this artifact and where it is stored",
        )
    import pickle

    return pickle.loads(data)  # the user opted in with allow_pickle=True
