"""The safety policy: a versioned TOML file of values, with floors in code
that no file can loosen.

    version = "2026-11-25.1"
    [windows]  unblock_cooldown_days, dismiss_days, unfollow_days
    [fatigue]  max_impressions, window_days
    [exposure] daily_cap_adult, daily_cap_minor
    [minors]   min_mutual_friends, suspicious_min_minors, suspicious_window_days
    [age]      min_dm_band, min_suggestion_band     ("16_17" or "ADULT")
    [regions.XX] any of min_dm_band, min_suggestion_band, min_mutual_friends,
                 daily_cap_minor

When two users are in different regions the stricter value applies."""

from __future__ import annotations

import math
import threading
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from graph.model import AgeBand, encode_region

DAY = 86400.0


class PolicyError(ValueError):
    """A policy file that is malformed or goes below a floor."""


# Floors: the weakest value any policy may set. They protect minors and are
# deliberately not configurable.
FLOOR_MIN_DM_BAND = AgeBand.AGE_16_17
FLOOR_MIN_SUGGESTION_BAND = AgeBand.AGE_16_17
FLOOR_MIN_MUTUAL_FRIENDS = 1
CEILING_DAILY_CAP_MINOR = 200
CEILING_SUSPICIOUS_MIN_MINORS = 5
FLOOR_SUSPICIOUS_WINDOW_DAYS = 7.0
FLOOR_UNBLOCK_COOLDOWN_DAYS = 1.0


@dataclass(frozen=True)
class RegionRules:
    """The per-region values (the rest of the policy is global)."""

    min_dm_band: AgeBand = AgeBand.AGE_16_17
    min_suggestion_band: AgeBand = AgeBand.AGE_16_17
    min_mutual_friends: int = 3
    daily_cap_minor: int = 50

    def stricter(self, other: RegionRules) -> RegionRules:
        return RegionRules(
            min_dm_band=max(self.min_dm_band, other.min_dm_band),
            min_suggestion_band=max(self.min_suggestion_band, other.min_suggestion_band),
            min_mutual_friends=max(self.min_mutual_friends, other.min_mutual_friends),
            daily_cap_minor=min(self.daily_cap_minor, other.daily_cap_minor),
        )


@dataclass(frozen=True)
class Policy:
    version: str = "builtin-1"
    unblock_cooldown_days: float = 30.0
    dismiss_days: float = 90.0
    unfollow_days: float = 30.0
    max_impressions: int = 5
    fatigue_window_days: float = 7.0
    daily_cap_adult: int = 1000
    suspicious_min_minors: int = 3
    suspicious_window_days: float = 30.0
    base: RegionRules = field(default_factory=RegionRules)
    regions: dict[str, RegionRules] = field(default_factory=dict)

    def region(self, code: str) -> RegionRules:
        return self.regions.get(code, self.base)

    def pair(self, code_a: str, code_b: str) -> RegionRules:
        """Rules for two users: the stricter of their regions'."""
        a, b = self.region(code_a), self.region(code_b)
        return a if a == b else a.stricter(b)


_BANDS = {"16_17": AgeBand.AGE_16_17, "AGE_BAND_16_17": AgeBand.AGE_16_17,
          "ADULT": AgeBand.ADULT, "AGE_BAND_ADULT": AgeBand.ADULT,
          "13_15": AgeBand.AGE_13_15, "AGE_BAND_13_15": AgeBand.AGE_13_15,
          "UNDER_13": AgeBand.UNDER_13, "AGE_BAND_UNDER_13": AgeBand.UNDER_13}

_GLOBAL_KEYS = {
    ("windows", "unblock_cooldown_days"): ("unblock_cooldown_days", float),
    ("windows", "dismiss_days"): ("dismiss_days", float),
    ("windows", "unfollow_days"): ("unfollow_days", float),
    ("fatigue", "max_impressions"): ("max_impressions", int),
    ("fatigue", "window_days"): ("fatigue_window_days", float),
    ("exposure", "daily_cap_adult"): ("daily_cap_adult", int),
    ("minors", "suspicious_min_minors"): ("suspicious_min_minors", int),
    ("minors", "suspicious_window_days"): ("suspicious_window_days", float),
}
_REGION_KEYS = {
    "min_dm_band": "band", "min_suggestion_band": "band", "min_mutual_friends": int, "daily_cap_minor": int,
}
# Where the base region values live in the file.
_BASE_REGION_KEYS = {
    ("age", "min_dm_band"): "min_dm_band",
    ("age", "min_suggestion_band"): "min_suggestion_band",
    ("minors", "min_mutual_friends"): "min_mutual_friends",
    ("exposure", "daily_cap_minor"): "daily_cap_minor",
}


def _value(where: str, raw: Any, kind: Any) -> Any:
    if kind == "band":
        if not isinstance(raw, str) or raw.upper() not in _BANDS:
            raise PolicyError(f"{where}: expected an age band such as \"16_17\" or \"ADULT\", got {raw!r}")
        return _BANDS[raw.upper()]
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise PolicyError(f"{where}: expected an integer, got {raw!r}")
        if raw < 0:
            raise PolicyError(f"{where}: must not be negative")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise PolicyError(f"{where}: expected a number, got {raw!r}")
    if math.isnan(raw):
        # nan compares false with everything: it would slip past every floor.
        raise PolicyError(f"{where}: expected a number, got nan")
    if raw < 0:
        raise PolicyError(f"{where}: must not be negative")
    return float(raw)


# Where each base region value sits in the file, for messages.
_BASE_KEY_NAMES = {name: f"{table}.{key}" for (table, key), name in _BASE_REGION_KEYS.items()}


def _check_region(where: str, rules: RegionRules, names: dict[str, str] | None = None) -> None:
    """``where`` prefixes the key; ``names`` maps a field to its name in the
    file (the base values live in several tables)."""
    def key(name: str) -> str:
        return f"{where}{(names or {}).get(name, name)}"

    if rules.min_dm_band < FLOOR_MIN_DM_BAND:
        raise PolicyError(f"{key('min_dm_band')}: below the floor: no direct messages under 16")
    if rules.min_suggestion_band < FLOOR_MIN_SUGGESTION_BAND:
        raise PolicyError(f"{key('min_suggestion_band')}: below the floor: no suggestions under 16")
    if rules.min_mutual_friends < FLOOR_MIN_MUTUAL_FRIENDS:
        raise PolicyError(f"{key('min_mutual_friends')}: below the floor of {FLOOR_MIN_MUTUAL_FRIENDS}: "
                          "minors are never suggested to strangers")
    if rules.daily_cap_minor > CEILING_DAILY_CAP_MINOR:
        raise PolicyError(f"{key('daily_cap_minor')}: above the ceiling of {CEILING_DAILY_CAP_MINOR}")


def parse_policy(data: dict[str, Any], source: str = "<policy>") -> Policy:
    """Build and validate a Policy from parsed TOML; raises PolicyError
    naming the file and key."""
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PolicyError(f"{source}: version: a non-empty string is required")
    known_tables = {"windows", "fatigue", "exposure", "minors", "age", "regions"}
    for key in data:
        if key != "version" and key not in known_tables:
            raise PolicyError(f"{source}: unknown key {key!r}")
    values: dict[str, Any] = {"version": version}
    base: dict[str, Any] = {}
    for table in known_tables - {"regions"}:
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise PolicyError(f"{source}: [{table}] must be a table")
        for key, raw in section.items():
            if (table, key) in _GLOBAL_KEYS:
                name, kind = _GLOBAL_KEYS[(table, key)]
                values[name] = _value(f"{source}: {table}.{key}", raw, kind)
            elif (table, key) in _BASE_REGION_KEYS:
                name = _BASE_REGION_KEYS[(table, key)]
                base[name] = _value(f"{source}: {table}.{key}", raw, _REGION_KEYS[name])
            else:
                raise PolicyError(f"{source}: unknown key {table}.{key}")
    base_rules = replace(RegionRules(), **base)
    _check_region(f"{source}: ", base_rules, _BASE_KEY_NAMES)
    regions: dict[str, RegionRules] = {}
    region_tables = data.get("regions", {})
    if not isinstance(region_tables, dict):
        raise PolicyError(f"{source}: [regions] must be a table")
    for code, section in region_tables.items():
        if not isinstance(section, dict):
            raise PolicyError(f"{source}: regions.{code} must be a table")
        try:
            encode_region(code)
        except ValueError:
            # A typo ("uk", "gb") would otherwise be an override that never applies.
            raise PolicyError(f"{source}: regions.{code}: not a CLDR region code such as \"GB\"") from None
        over: dict[str, Any] = {}
        for key, raw in section.items():
            if key not in _REGION_KEYS:
                raise PolicyError(f"{source}: unknown key regions.{code}.{key}")
            over[key] = _value(f"{source}: regions.{code}.{key}", raw, _REGION_KEYS[key])
        rules = replace(base_rules, **over)
        _check_region(f"{source}: regions.{code}.", rules)
        regions[code] = rules
    policy = replace(Policy(), **values, base=base_rules, regions=regions)
    if policy.unblock_cooldown_days < FLOOR_UNBLOCK_COOLDOWN_DAYS:
        raise PolicyError(f"{source}: windows.unblock_cooldown_days: below the floor of "
                          f"{FLOOR_UNBLOCK_COOLDOWN_DAYS} day")
    if not 1 <= policy.suspicious_min_minors <= CEILING_SUSPICIOUS_MIN_MINORS:
        raise PolicyError(f"{source}: minors.suspicious_min_minors: must be between 1 and "
                          f"{CEILING_SUSPICIOUS_MIN_MINORS}")
    if policy.suspicious_window_days < FLOOR_SUSPICIOUS_WINDOW_DAYS:
        raise PolicyError(f"{source}: minors.suspicious_window_days: below the floor of "
                          f"{FLOOR_SUSPICIOUS_WINDOW_DAYS} days")
    if policy.max_impressions < 1:
        raise PolicyError(f"{source}: fatigue.max_impressions: must be at least 1")
    return policy


def load_policy(path: Path) -> Policy:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise PolicyError(f"{path}: cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{path}: not valid TOML: {err}") from None
    return parse_policy(data, str(path))


class PolicyHolder:
    """The running policy; a reload that fails keeps the old one."""

    def __init__(self, policy: Policy | None = None, path: Path | None = None) -> None:
        self._policy = policy or Policy()
        self.path = path
        self._lock = threading.Lock()

    @property
    def current(self) -> Policy:
        return self._policy

    def reload(self, path: Path | None = None) -> Policy:
        """Load ``path`` (or the file served from); raise PolicyError and
        keep the running policy if it is bad."""
        with self._lock:
            target = path or self.path
            if target is None:
                raise PolicyError("no policy file to reload: the service runs the built-in policy")
            policy = load_policy(target)
            self._policy = policy
            self.path = target
            return policy


def policy_fields() -> list[str]:
    return [f.name for f in fields(Policy)]
