"""colabkit.rundir.runs: a run folder's contract, its metrics.csv columns and the key that picks a
run's best epoch (and colabkit.training.saver, which writes that key into best.pt)."""
import pytest

from colabkit.rundir.checkpoint import read_checkpoint
from colabkit.rundir.runs import (DETERMINISTIC_FIELDS, METRIC_FIELDS, TTA_FIELDS, WALL_CLOCK_FIELDS,
                           SelectionKey, format_row, selection_key)
from colabkit.training.saver import Saver
from colabkit.colab.storage import RunStorage


def test_each_metric_column_is_in_one_named_set_and_the_exact_ones_hold_no_clock():
    """The sets are named, not sliced from METRIC_FIELDS: a new column must be put in one
    of them, and cannot slip into what the determinism tests compare."""
    assert DETERMINISTIC_FIELDS == ("epoch", "lr", "train_loss", "train_acc", "test_loss",
                                    "test_acc", "val_loss", "val_acc")
    assert TTA_FIELDS == ("test_acc_tta", "val_acc_tta")
    assert WALL_CLOCK_FIELDS == ("seconds", "images_per_s", "time")
    named = DETERMINISTIC_FIELDS + TTA_FIELDS + WALL_CLOCK_FIELDS
    assert sorted(named) == sorted(METRIC_FIELDS) and len(set(named)) == len(named)


def test_exact_columns_are_written_in_full_and_wall_clock_ones_to_three_decimals():
    third = 1 / 3
    row = format_row({k: third for k in METRIC_FIELDS if k != "time"})
    assert {k for k, v in row.items() if v == repr(third)} == set(DETERMINISTIC_FIELDS + TTA_FIELDS)
    assert {k for k, v in row.items() if v == "0.333"} == {"seconds", "images_per_s"}


@pytest.mark.parametrize("val_accs,tta,split,column,test,val", [
    ([None, None], False, "test", "test_acc", "test_acc", "val_acc"),
    ([float("nan")], True, "test", "test_acc_tta", "test_acc_tta", "val_acc_tta"),
    ([None, 50.0], False, "val", "val_acc", "test_acc", "val_acc"),
    ([50.0], True, "val", "val_acc_tta", "test_acc_tta", "val_acc_tta"),
])
def test_the_selection_key_is_a_split_and_a_measure_whose_columns_it_names(val_accs, tta, split,
                                                                             column, test, val):
    """Built once, read by name: no reader splits a column's name to learn the split, or
    pieces "_tta" onto one."""
    key = selection_key(val_accs, tta)
    assert key == SelectionKey(split, tta) and (key.split, key.tta) == (split, tta)
    assert (key.column, key.accuracy("test"), key.accuracy("val")) == (column, test, val)
    assert {key.column, key.accuracy("test"), key.accuracy("val")} <= set(METRIC_FIELDS)


@pytest.mark.parametrize("saved,key", [
    ({"selected_on": "val", "test_acc": 50.0}, SelectionKey("val", False)),
    ({"selected_on": "test", "test_acc": 50.0, "test_acc_tta": 51.0}, SelectionKey("test", True)),
    ({"test_acc": 50.0}, SelectionKey("test", False)),  # before the validation split: none
])
def test_a_best_checkpoint_says_what_chose_it_in_the_string_every_colabkit_wrote(saved, key):
    assert SelectionKey.of_checkpoint(saved) == key


def test_best_pt_is_chosen_and_saved_with_the_key_as_a_plain_string(tmp_path):
    """What a best.pt holds is read back by the key (and by any older colabkit)."""
    saver = Saver(RunStorage(tmp_path, mirror_minutes=0), False, None, [], 0, [0, 1])
    row = {"epoch": 1, "test_acc": 40.0, "val_acc": 45.0, "val_acc_tta": None}
    snapshot = {"format": 1, "epoch": 1, "config": {}, "model": {}, "classes": ["a", "b"],
                "precision": "bf16", "history": [row]}
    saver.epoch_done(snapshot, row, final=True)
    saver.close()
    best = read_checkpoint(tmp_path / "best.pt")
    assert best["selected_on"] == "val" and type(best["selected_on"]) is str
    assert SelectionKey.of_checkpoint(best) == SelectionKey("val", False)
    assert best["precision"] == "bf16"  # the report's model path predicts in it
