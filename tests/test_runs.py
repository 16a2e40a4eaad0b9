"""colabkit.runs: a run folder's contract, its metrics.csv columns and the key that picks a
run's best epoch."""
from colabkit.runs import (DETERMINISTIC_FIELDS, METRIC_FIELDS, TTA_FIELDS, WALL_CLOCK_FIELDS,
                           format_row)


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
