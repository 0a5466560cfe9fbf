"""The temporal data sets the evaluation reads, as event tables.

- CollegeMsg (``collegemsg/CollegeMsg.txt.gz``): ``SRC DST UNIXTS`` per
  line; every line is a message.
- bitcoin-otc (``bitcoin-otc/soc-sign-bitcoinotc.csv.gz``):
  ``SOURCE,TARGET,RATING,TIME``; a positive rating is an interaction, a
  negative one a report (never an interaction), a zero rating is skipped.
- sx-mathoverflow (``sx-mathoverflow/sx-mathoverflow.txt.gz``): ``SRC DST
  UNIXTS``; an answer or comment to someone's post, read as a message from
  SRC to DST (the site has no private messages: a reply is the nearest).
- higgs-twitter (``higgs-twitter/higgs-activity_time.txt.gz``): ``USER_A
  USER_B UNIXTS TYPE``, typed interactions from A to B: RT (retweet) as
  SHARE, MT (mention) as MENTION, RE (reply) as MESSAGE, so the graph
  weighs them as it weighs the service's own events.

Every user gets a permissive adult profile (active, adult, messages from
everyone, discoverable) at their first event, so the safety filters
judge the graph, not missing profiles. Files are read where they are;
nothing is copied."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from graph.model import (
    AccountState,
    AgeAssurance,
    AgeBand,
    EventKind,
    InteractionType,
    MessagePrivacy,
    Profile,
    ReportCategory,
)
from graph.table import EventTable


@dataclass(frozen=True)
class Dataset:
    name: str
    table: EventTable  # events sorted by time, each user's profile at their first event

    @property
    def edge_times(self) -> npt.NDArray[np.float64]:
        times: npt.NDArray[np.float64] = self.table.time[self.table.kind != EventKind.PROFILE]
        return times


DATASETS: dict[str, str] = {
    "collegemsg": "collegemsg/CollegeMsg.txt.gz",
    "bitcoin-otc": "bitcoin-otc/soc-sign-bitcoinotc.csv.gz",
    "sx-mathoverflow": "sx-mathoverflow/sx-mathoverflow.txt.gz",
    "higgs-twitter": "higgs-twitter/higgs-activity_time.txt.gz",
}

# higgs-twitter's TYPE column -> the interaction type it is read as.
HIGGS_TYPES: dict[str, InteractionType] = {
    "RT": InteractionType.SHARE,
    "MT": InteractionType.MENTION,
    "RE": InteractionType.MESSAGE,
}


def adult_profile(user_id: int) -> Profile:
    return Profile(user_id, age_band=AgeBand.ADULT, message_privacy=MessagePrivacy.EVERYONE,
                   account_state=AccountState.ACTIVE, region_code="US", discoverable=True,
                   age_assurance=AgeAssurance.VERIFIED)


def edge_table(src: np.ndarray, dst: np.ndarray, time: np.ndarray, kind: np.ndarray, detail: np.ndarray) -> EventTable:
    """Edge events sorted by time (stable), each user's permissive adult
    profile just before the user's first event (the sign-up: a snapshot
    cut earlier does not know the user). Self-loops are dropped."""
    keep = src != dst
    src, dst, time, kind, detail = src[keep], dst[keep], time[keep], kind[keep], detail[keep]
    ends = np.concatenate([src, dst])
    users, inv = np.unique(ends, return_inverse=True)
    first = np.full(users.shape[0], np.inf)
    np.minimum.at(first, inv, np.concatenate([time, time]))
    n_users, n_edges = users.shape[0], src.shape[0]
    merged = EventTable(
        time=np.concatenate([first, time]).astype(np.float64),
        kind=np.concatenate([np.full(n_users, int(EventKind.PROFILE)), kind]).astype(np.uint8),
        actor=np.concatenate([users, src]).astype(np.int64),
        target=np.concatenate([np.zeros(n_users, np.int64), dst]).astype(np.int64),
        detail=np.concatenate([np.zeros(n_users), detail]).astype(np.int16),
        event_id=np.full(n_users + n_edges, "", object),
    )
    # Stable: a profile comes before the edges of the same second.
    order = np.argsort(merged.time, kind="stable")
    where = np.empty_like(order)
    where[order] = np.arange(order.shape[0])
    out = EventTable(merged.time[order], merged.kind[order], merged.actor[order], merged.target[order],
                     merged.detail[order], merged.event_id[order])
    out.profiles = {int(where[i]): adult_profile(int(u)) for i, u in enumerate(users.tolist())}
    return out


def _read(path: Path, delimiter: str | None) -> np.ndarray:
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=delimiter, dtype=np.float64, ndmin=2)


def load_messages(path: Path, name: str = "collegemsg") -> Dataset:
    """``SRC DST UNIXTS`` lines, each a message (CollegeMsg, sx-mathoverflow)."""
    raw = _read(path, None)
    if raw.shape[0] and raw.shape[1] != 3:
        raise ValueError(f"{path}: expected 3 columns (SRC DST UNIXTS), found {raw.shape[1]}")
    n = raw.shape[0]
    table = edge_table(raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int64), raw[:, 2],
                       np.full(n, int(EventKind.INTERACTION)), np.full(n, int(InteractionType.MESSAGE)))
    return Dataset(name, table)


def load_collegemsg(path: Path) -> Dataset:
    return load_messages(path, "collegemsg")


def load_higgs(path: Path) -> Dataset:
    """``USER_A USER_B UNIXTS TYPE`` lines, typed by ``HIGGS_TYPES``; an
    unknown TYPE is an error naming its line."""
    src: list[int] = []
    dst: list[int] = []
    times: list[float] = []
    detail: list[int] = []
    with gzip.open(path, "rt") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4 or fields[3] not in HIGGS_TYPES:
                raise ValueError(f"{path}:{number}: expected USER_A USER_B UNIXTS RT|MT|RE, got {line.strip()!r}")
            src.append(int(fields[0]))
            dst.append(int(fields[1]))
            times.append(float(fields[2]))
            detail.append(int(HIGGS_TYPES[fields[3]]))
    n = len(src)
    table = edge_table(np.array(src, np.int64), np.array(dst, np.int64), np.array(times, np.float64),
                       np.full(n, int(EventKind.INTERACTION)), np.array(detail, np.int64))
    return Dataset("higgs-twitter", table)


def load_bitcoin_otc(path: Path) -> Dataset:
    raw = _read(path, ",")
    rating = raw[:, 2]
    keep = rating != 0
    raw, rating = raw[keep], rating[keep]
    positive = rating > 0
    kind = np.where(positive, int(EventKind.INTERACTION), int(EventKind.REPORT))
    detail = np.where(positive, int(InteractionType.MESSAGE), int(ReportCategory.OTHER))
    table = edge_table(raw[:, 0].astype(np.int64), raw[:, 1].astype(np.int64), raw[:, 3], kind, detail)
    return Dataset("bitcoin-otc", table)


def load(name: str, data_dir: Path) -> Dataset:
    path = Path(data_dir) / DATASETS[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data set {name} not found (pass --data DIR)")
    if name == "bitcoin-otc":
        return load_bitcoin_otc(path)
    if name == "higgs-twitter":
        return load_higgs(path)
    return load_messages(path, name)
