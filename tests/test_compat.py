"""What changed names in 0.2 keeps working for one release: runs written before it resume, compare
and reopen; the old Python names work with a deprecation notice; every command is a function
``gancheck.X`` with its name."""

from __future__ import annotations

import json
import warnings

import pytest


def test_a_fingerprint_written_with_descriptor_fields_reads_as_todays_embedder_fields(tmp_path):
    from gancheck.run.fingerprint import load_fingerprint, upgraded

    old = {"statistics_revision": 3, "descriptor.name": "pixel", "descriptor.models": "", "descriptor.options": "size=16", "theta": 0.3}
    (tmp_path / "state.json").write_text(json.dumps({"fingerprint": old, "shards": {}}))
    assert load_fingerprint(tmp_path) == upgraded(old) == {"statistics_revision": 3, "embedder.name": "pixel", "embedder.models": "",
                                                         "embedder.options": "size=16", "theta": 0.3}


def test_a_manifest_from_before_the_strict_options_reopens_its_onnx_generator():
    from gancheck.run.directory import stored_generator_options
    from gancheck.sources import load_generator
    from gancheck.sources.planted import DEMO_MODEL

    old = {"generator_options": {"layout": "auto", "value_range": "auto", "prior": "normal", "truncation": 2.0, "inputs": {},
                                 "concurrency": 1, "timeout": 1800.0, "token_env": "GANCHECK_HTTP_TOKEN", "http_retries": 2}}
    options = stored_generator_options(old)
    assert set(options) == {"layout", "value_range", "prior", "truncation", "inputs"}
    load_generator(str(DEMO_MODEL), **options)
    assert stored_generator_options({"generator_options": {"concurrency": 4}}) == {"concurrency": 4}  # a setting the user chose


def test_every_command_is_a_function_of_the_package_with_its_name():
    import gancheck
    from gancheck.cli.commands import app

    for command in app.registered_commands:
        if command.hidden:
            continue
        assert callable(getattr(gancheck, command.name.replace("-", "_"))), command.name
    assert gancheck.calibrate.__module__ == "gancheck.calibration"


def test_the_old_python_names_work_with_a_deprecation_notice():
    import gancheck

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        embedder = gancheck.load_descriptor("pixel", size=8)
    assert embedder.name == "pixel" and any(issubclass(w.category, DeprecationWarning) and "load_embedder" in str(w.message) for w in seen)
    with pytest.raises(gancheck.GancheckError, match="export-embedder"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            gancheck.export_descriptor("pixel", "x.onnx")
