"""Tests of particle limits from EU GMP Annex 1 Table 5 and ISO 14644-1."""

from __future__ import annotations

import pytest

from envmon.config.particles import (
    ANNEX1_TABLE5,
    alert_from_action,
    grade_limit,
    iso_class_limit,
    round_significant,
)
from envmon.sensors import Occupancy

REST, OPERATION = Occupancy.AT_REST, Occupancy.IN_OPERATION


class TestAnnex1Table5:
    """The Annex 1 (2022) Table 5 monitoring limits, per grade and occupancy state."""

    @pytest.mark.parametrize(
        ("grade", "state", "size", "limit"),
        [
            ("A", REST, 0.5, 3_520),
            ("A", REST, 5.0, 29),
            ("A", OPERATION, 0.5, 3_520),
            ("A", OPERATION, 5.0, 29),
            ("B", REST, 0.5, 3_520),
            ("B", REST, 5.0, 29),
            ("B", OPERATION, 0.5, 352_000),
            ("B", OPERATION, 5.0, 2_930),
            ("C", REST, 0.5, 352_000),
            ("C", REST, 5.0, 2_930),
            ("C", OPERATION, 0.5, 3_520_000),
            ("C", OPERATION, 5.0, 29_300),
            ("D", REST, 0.5, 3_520_000),
            ("D", REST, 5.0, 29_300),
        ],
    )
    def test_limits(self, grade, state, size, limit):
        """Each grade and state has the limit printed in Table 5."""
        assert grade_limit(grade, state, size) == limit

    @pytest.mark.parametrize("size", [0.5, 5.0])
    def test_grade_d_in_operation_has_no_default(self, size):
        """Annex 1 leaves grade D in operation to the manufacturer: no default."""
        assert grade_limit("D", OPERATION, size) is None

    def test_table_covers_every_grade_and_state(self):
        """The table is complete: four grades, two states, two particle sizes."""
        assert set(ANNEX1_TABLE5) == {"A", "B", "C", "D"}
        for states in ANNEX1_TABLE5.values():
            assert set(states) == {REST, OPERATION}
            for sizes in states.values():
                assert set(sizes) == {0.5, 5.0}


class TestIsoClassLimit:
    """ISO 14644-1 Cn = 10^N·(0.1/D)^2.08, rounded to three significant figures."""

    @pytest.mark.parametrize(
        ("iso", "size", "limit"),
        [
            (5, 0.5, 3_520),
            (5, 5.0, 29),
            (6, 0.5, 35_200),
            (6, 5.0, 293),
            (7, 0.5, 352_000),
            (7, 5.0, 2_930),
            (8, 0.5, 3_520_000),
            (8, 5.0, 29_300),
            (9, 0.5, 35_200_000),
            (5, 1.0, 832),
            (4, 0.1, 10_000),
            (1, 0.1, 10),
        ],
    )
    def test_matches_iso_table_1(self, iso, size, limit):
        """The formula reproduces the values of ISO 14644-1:2015 Table 1."""
        assert iso_class_limit(iso, size) == limit

    def test_iso_matches_annex1_at_rest(self):
        """Annex 1's at-rest grades equal ISO 5 (A, B), 7 (C) and 8 (D) at 0.5 µm."""
        assert iso_class_limit(5, 0.5) == grade_limit("B", REST, 0.5)
        assert iso_class_limit(7, 0.5) == grade_limit("C", REST, 0.5)
        assert iso_class_limit(8, 0.5) == grade_limit("D", REST, 0.5)

    def test_round_significant(self):
        """Rounding to significant figures rounds halves away from zero."""
        assert round_significant(3516.76, 3) == 3520
        assert round_significant(292.5, 3) == 293
        assert round_significant(0, 3) == 0


class TestAlertFromAction:
    """The default alert limit is a fraction of the action limit, in whole particles."""

    def test_fraction(self):
        """0.8 of 3,520 is 2,816."""
        assert alert_from_action(3_520, 0.8) == 2_816

    def test_rounds_half_up(self):
        """0.5 of 29 is 14.5, rounded to 15."""
        assert alert_from_action(29, 0.5) == 15

    def test_fraction_one_means_no_alert(self):
        """A fraction of 1 disables the separate alert level."""
        assert alert_from_action(3_520, 1.0) is None
