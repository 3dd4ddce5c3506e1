"""Data sources: only ``hub:NAME`` reaches the Hub; anything else must exist locally."""

from __future__ import annotations

from diffcore.io import hub_name, missing_source


def test_hub_name_reads_only_the_hub_prefix():
    assert hub_name("hub:fashion_mnist") == "fashion_mnist"
    assert hub_name("hub:owner/some-set.v2") == "owner/some-set.v2"
    assert hub_name("fashion_mnist") is None
    assert hub_name("data/fmnist") is None
    assert hub_name("hub:") is None
    assert hub_name("hub:../etc") is None


def test_existing_paths_and_hub_names_are_not_missing(tmp_path):
    (tmp_path / "table.csv").write_text("a\n1\n")
    assert missing_source(tmp_path) is None
    assert missing_source(str(tmp_path / "table.csv")) is None
    assert missing_source("hub:fashion_mnist") is None


def test_a_mistyped_path_is_named_and_the_hub_spelling_suggested(tmp_path):
    message = missing_source("data/fmnist")
    assert message is not None and "data/fmnist does not exist" in message
    assert "hub:data/fmnist" in message
    # a file name cannot be a Hub id: no suggestion, still one line
    message = missing_source(str(tmp_path / "absent.parquet"))
    assert message is not None and "absent.parquet does not exist" in message
    assert "hub:" not in message and "\n" not in message


def test_an_empty_hub_name_is_an_error():
    message = missing_source("hub:")
    assert message is not None and "hub:NAME" in message
