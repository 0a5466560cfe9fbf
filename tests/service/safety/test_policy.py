"""The safety policy file (issue 4): parsing, the floors no file can
loosen, per-region overrides, reload without restart (a bad file keeps the
running policy), and the ``contactgraph policy check`` / ``policy diff``
commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from graph.clock import ManualClock
from graph.eventlog import write_edge_csv, write_profile_csv
from graph.model import AccountState, AgeBand, MessagePrivacy, Profile
from graph.rebuild import rebuild
from service.cli.exit_codes import ExitCode
from service.safety.policy import (
    CEILING_DAILY_CAP_MINOR,
    FLOOR_MIN_DM_BAND,
    FLOOR_MIN_MUTUAL_FRIENDS,
    FLOOR_MIN_SUGGESTION_BAND,
    FLOOR_SUSPICIOUS_WINDOW_DAYS,
    FLOOR_UNBLOCK_COOLDOWN_DAYS,
    Policy,
    PolicyError,
    PolicyHolder,
    load_policy,
    parse_policy,
)
from service.server.config import ServerConfig
from service.server.server import build_safety, reload_policy

CLI = Path(sys.executable).parent / "contactgraph"

GOOD = """\
version = "2026-11-25.1"
[windows]
unblock_cooldown_days = 14
dismiss_days = 60.5
unfollow_days = 20
[fatigue]
max_impressions = 4
window_days = 3
[exposure]
daily_cap_adult = 500
daily_cap_minor = 20
[minors]
min_mutual_friends = 4
suspicious_min_minors = 2
suspicious_window_days = 45
[age]
min_dm_band = "16_17"
min_suggestion_band = "AGE_BAND_16_17"
[regions.KR]
min_dm_band = "ADULT"
[regions.DE]
daily_cap_minor = 5
min_mutual_friends = 6
[regions.419]
min_suggestion_band = "adult"
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class TestParse:
    def test_good_file(self, tmp_path: Path) -> None:
        """Every key of a good file lands in the Policy, ints as ints and
        days as floats."""
        p = load_policy(write(tmp_path, GOOD))
        assert p.version == "2026-11-25.1"
        assert (p.unblock_cooldown_days, p.dismiss_days, p.unfollow_days) == (14.0, 60.5, 20.0)
        assert (p.max_impressions, p.fatigue_window_days, p.daily_cap_adult) == (4, 3.0, 500)
        assert (p.suspicious_min_minors, p.suspicious_window_days) == (2, 45.0)
        assert p.base.min_dm_band == AgeBand.AGE_16_17 and p.base.min_suggestion_band == AgeBand.AGE_16_17
        assert (p.base.min_mutual_friends, p.base.daily_cap_minor) == (4, 20)
        assert set(p.regions) == {"KR", "DE", "419"}

    def test_version_only_is_the_builtin_values(self, tmp_path: Path) -> None:
        """A file with only a version keeps every built-in value."""
        p = load_policy(write(tmp_path, 'version = "v"\n'))
        assert p == Policy(version="v")


BAD_FILES = [
    ("missing_version", "[windows]\ndismiss_days = 3\n", "version"),
    ("empty_version", 'version = " "\n', "version"),
    ("numeric_version", "version = 3\n", "version"),
    ("unknown_top_level_key", 'version = "v"\ncolour = "red"\n', "colour"),
    ("unknown_key_in_table", 'version = "v"\n[windows]\ndismis_days = 3\n', "windows.dismis_days"),
    ("table_is_a_number", 'version = "v"\nwindows = 5\n', "[windows]"),
    ("string_for_days", 'version = "v"\n[windows]\ndismiss_days = "ten"\n', "windows.dismiss_days"),
    ("bool_for_int", 'version = "v"\n[fatigue]\nmax_impressions = true\n', "fatigue.max_impressions"),
    ("float_for_int", 'version = "v"\n[exposure]\ndaily_cap_adult = 2.5\n', "exposure.daily_cap_adult"),
    ("negative_days", 'version = "v"\n[windows]\ndismiss_days = -1\n', "windows.dismiss_days"),
    ("negative_int", 'version = "v"\n[exposure]\ndaily_cap_adult = -1\n', "exposure.daily_cap_adult"),
    ("nan_days", 'version = "v"\n[windows]\nunfollow_days = nan\n', "windows.unfollow_days"),
    ("nan_fatigue_window", 'version = "v"\n[fatigue]\nwindow_days = nan\n', "fatigue.window_days"),
    ("unknown_band", 'version = "v"\n[age]\nmin_dm_band = "teen"\n', "age.min_dm_band"),
    ("band_as_number", 'version = "v"\n[age]\nmin_dm_band = 3\n', "age.min_dm_band"),
    ("zero_impressions", 'version = "v"\n[fatigue]\nmax_impressions = 0\n', "fatigue.max_impressions"),
    ("regions_not_a_table", 'version = "v"\nregions = 5\n', "regions"),
    ("region_not_a_table", 'version = "v"\n[regions]\nGB = 5\n', "regions.GB"),
    ("region_code_lowercase", 'version = "v"\n[regions.gb]\nmin_dm_band = "ADULT"\n', "regions.gb"),
    ("region_code_three_letters", 'version = "v"\n[regions.GBR]\nmin_dm_band = "ADULT"\n', "regions.GBR"),
    ("unknown_region_key", 'version = "v"\n[regions.GB]\ndismiss_days = 3\n', "regions.GB.dismiss_days"),
    ("region_value_type", 'version = "v"\n[regions.GB]\nmin_mutual_friends = "x"\n',
     "regions.GB.min_mutual_friends"),
    ("not_toml", 'version = "v\n', "not valid TOML"),
]


class TestBadFiles:
    @pytest.mark.parametrize("text,key", [(t, k) for _, t, k in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
    def test_rejected_naming_the_key(self, tmp_path: Path, text: str, key: str) -> None:
        """A malformed file is rejected with a PolicyError whose message
        names the file and the offending key."""
        path = write(tmp_path, text)
        with pytest.raises(PolicyError) as err:
            load_policy(path)
        assert key in str(err.value)
        assert str(path) in str(err.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is a PolicyError, not an OSError."""
        with pytest.raises(PolicyError, match="cannot read"):
            load_policy(tmp_path / "nope.toml")


FLOORS = [
    # (id, section-and-key, value below the floor, value at the floor)
    ("min_dm_band", "[age]\nmin_dm_band", '"13_15"', '"16_17"'),
    ("min_dm_band_under_13", "[age]\nmin_dm_band", '"UNDER_13"', '"ADULT"'),
    ("min_suggestion_band", "[age]\nmin_suggestion_band", '"13_15"', '"16_17"'),
    ("min_mutual_friends", "[minors]\nmin_mutual_friends", "0", str(FLOOR_MIN_MUTUAL_FRIENDS)),
    ("daily_cap_minor", "[exposure]\ndaily_cap_minor", str(CEILING_DAILY_CAP_MINOR + 1), str(CEILING_DAILY_CAP_MINOR)),
    ("suspicious_min_minors_high", "[minors]\nsuspicious_min_minors", "6", "5"),
    ("suspicious_min_minors_zero", "[minors]\nsuspicious_min_minors", "0", "1"),
    ("suspicious_window_days", "[minors]\nsuspicious_window_days", "6.9", str(FLOOR_SUSPICIOUS_WINDOW_DAYS)),
    ("suspicious_window_nan", "[minors]\nsuspicious_window_days", "nan", "inf"),
    ("unblock_cooldown_days", "[windows]\nunblock_cooldown_days", "0.5", str(FLOOR_UNBLOCK_COOLDOWN_DAYS)),
    ("unblock_cooldown_nan", "[windows]\nunblock_cooldown_days", "nan", "1"),
    ("region_min_dm_band", "[regions.XX]\nmin_dm_band", '"13_15"', '"16_17"'),
    ("region_min_suggestion_band", "[regions.XX]\nmin_suggestion_band", '"UNDER_13"', '"16_17"'),
    ("region_min_mutual_friends", "[regions.XX]\nmin_mutual_friends", "0", "1"),
    ("region_daily_cap_minor", "[regions.XX]\ndaily_cap_minor", "500", "200"),
]


class TestFloors:
    def test_floor_constants_protect_minors(self) -> None:
        """The floors in code: no direct messages or suggestions under 16."""
        assert FLOOR_MIN_DM_BAND == AgeBand.AGE_16_17 and FLOOR_MIN_SUGGESTION_BAND == AgeBand.AGE_16_17
        assert FLOOR_MIN_MUTUAL_FRIENDS >= 1

    @pytest.mark.parametrize("where,below,at", [f[1:] for f in FLOORS], ids=[f[0] for f in FLOORS])
    def test_below_floor_rejected_at_floor_accepted(self, tmp_path: Path, where: str, below: str, at: str) -> None:
        """A file going below a floor (or above a ceiling) is rejected with a
        message naming the key; the floor value itself is accepted."""
        section, name = where.split("\n")
        key = f"{section.strip('[]')}.{name}"  # e.g. age.min_dm_band, regions.XX.min_dm_band
        with pytest.raises(PolicyError) as err:
            load_policy(write(tmp_path, f'version = "v"\n{where} = {below}\n'))
        assert key in str(err.value)
        load_policy(write(tmp_path, f'version = "v"\n{where} = {at}\n', "ok.toml"))

    def test_region_override_checked_after_merging(self) -> None:
        """Every region's rules are checked after merging with the base, and
        the message names the region's key."""
        with pytest.raises(PolicyError, match=r"regions\.XX\.min_mutual_friends"):
            parse_policy({"version": "v", "regions": {"XX": {"min_mutual_friends": 0}}})


class TestRegions:
    def test_overrides_inherit_the_base(self, tmp_path: Path) -> None:
        """A region override changes only the keys it sets."""
        p = load_policy(write(tmp_path, GOOD))
        assert p.region("KR").min_dm_band == AgeBand.ADULT
        assert p.region("KR").min_mutual_friends == 4 and p.region("KR").daily_cap_minor == 20
        assert (p.region("DE").daily_cap_minor, p.region("DE").min_mutual_friends) == (5, 6)
        assert p.region("419").min_suggestion_band == AgeBand.ADULT
        assert p.region("US") == p.base and p.region("") == p.base

    @pytest.mark.parametrize("a,b,expected", [
        ("KR", "DE", (AgeBand.ADULT, AgeBand.AGE_16_17, 6, 5)),
        ("DE", "KR", (AgeBand.ADULT, AgeBand.AGE_16_17, 6, 5)),
        ("KR", "", (AgeBand.ADULT, AgeBand.AGE_16_17, 4, 20)),
        ("419", "DE", (AgeBand.AGE_16_17, AgeBand.ADULT, 6, 5)),
        ("US", "", (AgeBand.AGE_16_17, AgeBand.AGE_16_17, 4, 20)),
    ], ids=["kr_de", "de_kr", "kr_unset", "419_de", "us_unset"])
    def test_pair_is_the_stricter(self, tmp_path: Path, a: str, b: str, expected: tuple[int, int, int, int]) -> None:
        """For two regions every value is the stricter one (higher ages and
        mutual-friend counts, lower minor cap), in either order."""
        r = load_policy(write(tmp_path, GOOD)).pair(a, b)
        assert (r.min_dm_band, r.min_suggestion_band, r.min_mutual_friends, r.daily_cap_minor) == expected


class TestReload:
    def test_good_reload_swaps(self, tmp_path: Path) -> None:
        """Reloading a good file puts it in force."""
        path = write(tmp_path, 'version = "one"\n')
        holder = PolicyHolder(load_policy(path), path)
        path.write_text('version = "two"\n[windows]\ndismiss_days = 1\n')
        assert holder.reload().version == "two"
        assert holder.current.version == "two" and holder.current.dismiss_days == 1.0

    @pytest.mark.parametrize("text", [
        'version = "bad"\n[age]\nmin_dm_band = "13_15"\n',
        'version = "bad"\nregions = 1\n',
        "not toml at all [",
        'version = "bad"\n[windows]\nunblock_cooldown_days = nan\n',
    ], ids=["below_floor", "regions_not_table", "not_toml", "nan_floor"])
    def test_bad_reload_keeps_the_old_policy(self, tmp_path: Path, text: str) -> None:
        """A bad file raises PolicyError and the running policy stays, both
        through PolicyHolder.reload and the server's reload_policy."""
        path = write(tmp_path, 'version = "one"\n')
        holder = PolicyHolder(load_policy(path), path)
        safety = build_safety(ServerConfig(snapshot=tmp_path, policy_path=path), ManualClock(0))
        before, served = holder.current, safety.policy.current
        path.write_text(text)
        with pytest.raises(PolicyError):
            holder.reload()
        assert holder.current is before
        assert reload_policy(safety) == "one"  # logs and keeps; never raises
        assert safety.policy.current is served

    def test_missing_file_keeps_the_old_policy(self, tmp_path: Path) -> None:
        """A reload from a file that vanished keeps the running policy."""
        path = write(tmp_path, 'version = "one"\n')
        holder = PolicyHolder(load_policy(path), path)
        path.unlink()
        with pytest.raises(PolicyError):
            holder.reload()
        assert holder.current.version == "one"

    def test_builtin_policy_has_nothing_to_reload(self) -> None:
        """A service running the built-in policy refuses a reload clearly."""
        with pytest.raises(PolicyError, match="no policy file"):
            PolicyHolder().reload()

    def test_server_refuses_to_start_on_a_bad_file(self, tmp_path: Path) -> None:
        """build_safety (server start-up) raises on a bad policy file."""
        path = write(tmp_path, 'version = "v"\n[age]\nmin_suggestion_band = "13_15"\n')
        with pytest.raises(PolicyError, match=r"age\.min_suggestion_band"):
            build_safety(ServerConfig(snapshot=tmp_path, policy_path=path), ManualClock(0))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120)


class TestPolicyCheckCli:
    def test_good_file_exits_0(self, tmp_path: Path) -> None:
        """`contactgraph policy check GOOD` prints ok with the version and
        exits 0."""
        out = run_cli("policy", "check", str(write(tmp_path, GOOD)))
        assert out.returncode == 0, out.stderr
        assert "ok" in out.stdout and "2026-11-25.1" in out.stdout and "3 region overrides" in out.stdout

    @pytest.mark.parametrize("text,key", [
        ('version = "v"\n[age]\nmin_dm_band = "13_15"\n', "age.min_dm_band"),
        ('version = "v"\nregions = 5\n', "regions"),
        ('version = "v"\n[windows]\ndismis_days = 1\n', "windows.dismis_days"),
        ("][", "not valid TOML"),
    ], ids=["below_floor", "regions_not_table", "typo", "not_toml"])
    def test_bad_file_exits_bad_input_naming_the_key(self, tmp_path: Path, text: str, key: str) -> None:
        """A bad file exits 3 (BAD_INPUT) with a one-line message naming the
        key (no traceback)."""
        out = run_cli("policy", "check", str(write(tmp_path, text)))
        assert out.returncode == ExitCode.BAD_INPUT
        assert key in out.stderr and "Traceback" not in out.stderr

    def test_missing_file_exits_bad_input(self, tmp_path: Path) -> None:
        """A missing file exits 3 (BAD_INPUT) with a clear message."""
        out = run_cli("policy", "check", str(tmp_path / "absent.toml"))
        assert out.returncode == ExitCode.BAD_INPUT and "cannot read" in out.stderr

    def test_usage_error_exits_2(self) -> None:
        """A missing argument is a usage error (exit 2)."""
        assert run_cli("policy", "check").returncode == 2


T = 1_760_000_000


@pytest.fixture(scope="module")
def diff_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small snapshot: minors 3 and 4 (16_17, discoverable) share exactly
    one friend, minor 5; adults 1 and 2 are friends, 2 is friends with 6.
    Under min_mutual_friends = 1 minors 3 and 4 are suggested to each other;
    under 2 they are not."""
    root = tmp_path_factory.mktemp("policy_diff")
    minor = dict(age_band=AgeBand.AGE_16_17, message_privacy=MessagePrivacy.EVERYONE,
                 account_state=AccountState.ACTIVE, discoverable=True)
    adult = dict(age_band=AgeBand.ADULT, message_privacy=MessagePrivacy.EVERYONE, account_state=AccountState.ACTIVE)
    profiles = [Profile(1, **adult), Profile(2, **adult), Profile(6, **adult),  # type: ignore[arg-type]
                Profile(3, **minor), Profile(4, **minor), Profile(5, **minor)]  # type: ignore[arg-type]
    pairs = [(3, 5), (4, 5), (1, 2), (2, 6)]
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows += [((T + 2 * i) * 1000, "follow", a, b), ((T + 2 * i + 1) * 1000, "follow", b, a)]
    logs = root / "logs"
    logs.mkdir()
    paths = [write_profile_csv(logs / "profiles.csv", profiles),
             write_edge_csv(logs / "edges.csv", [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                            [r[3] for r in rows], [f"e{i}" for i in range(len(rows))])]
    rebuild(paths, root / "snapshot", clock=ManualClock(T + 100))
    return root / "snapshot"


class TestPolicyDiffCli:
    def test_prints_the_table(self, tmp_path: Path, diff_snapshot: Path) -> None:
        """`contactgraph policy diff OLD NEW --snapshot DIR` prints, per
        reason, the suggestions the change removes and adds: raising
        min_mutual_friends from 1 to 2 removes the two minors' suggestions
        of each other under MINOR_NO_SAFE_CONNECTION; the reverse adds them."""
        old = write(tmp_path, 'version = "old"\n[minors]\nmin_mutual_friends = 1\n', "old.toml")
        new = write(tmp_path, 'version = "new"\n[minors]\nmin_mutual_friends = 2\n', "new.toml")
        out = run_cli("policy", "diff", str(old), str(new), "--snapshot", str(diff_snapshot), "--sample", "100")
        assert out.returncode == 0, out.stderr
        assert "policy old -> new on 6 sampled viewers" in out.stdout
        assert re.search(r"^reason\s+removed\s+added$", out.stdout, re.M)
        assert re.search(r"^MINOR_NO_SAFE_CONNECTION\s+2\s+0$", out.stdout, re.M), out.stdout
        back = run_cli("policy", "diff", str(new), str(old), "--snapshot", str(diff_snapshot), "--sample", "100")
        assert back.returncode == 0, back.stderr
        assert re.search(r"^MINOR_NO_SAFE_CONNECTION\s+0\s+2$", back.stdout, re.M), back.stdout

    def test_same_policy_changes_nothing(self, tmp_path: Path, diff_snapshot: Path) -> None:
        """Diffing a policy against itself reports no suggestion changes."""
        old = write(tmp_path, 'version = "same"\n', "same.toml")
        out = run_cli("policy", "diff", str(old), str(old), "--snapshot", str(diff_snapshot))
        assert out.returncode == 0, out.stderr
        assert "(no suggestion changes)" in out.stdout

    def test_bad_new_policy_exits_bad_input(self, tmp_path: Path, diff_snapshot: Path) -> None:
        """A bad policy on either side of a diff exits 3 (BAD_INPUT) naming
        the key."""
        old = write(tmp_path, 'version = "old"\n', "old.toml")
        new = write(tmp_path, 'version = "new"\n[minors]\nmin_mutual_friends = 0\n', "new.toml")
        out = run_cli("policy", "diff", str(old), str(new), "--snapshot", str(diff_snapshot))
        assert out.returncode == ExitCode.BAD_INPUT and "minors.min_mutual_friends" in out.stderr
