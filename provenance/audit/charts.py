"""Charts for the audit report, rendered with matplotlib (Agg) to embeddable PNG bytes."""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def barh(values: Mapping[str, float], *, title: str, xlabel: str, limit: int = 20) -> bytes:
    """A horizontal bar chart of the largest ``limit`` values."""
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    labels = [k for k, _ in items][::-1]
    numbers = [v for _, v in items][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(items), 2) + 1.2))
    bars = ax.barh(labels, numbers, color="#3b6ea5")
    ax.bar_label(bars, labels=[f"{v:,.1f}".rstrip("0").rstrip(".") for v in numbers], padding=3)
    ax.margins(x=0.15)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if not items:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def consent_timeline(
    events: Sequence[tuple[dt.datetime, str, str]], *, snapshot_at: dt.datetime | None
) -> bytes:
    """Consent events over time: (effective time, action, subject label). With no events
    the chart says so instead of drawing empty axes; a few events are labelled."""
    if not events:
        fig, ax = plt.subplots(figsize=(7, 1.2))
        ax.axis("off")
        when = f" (training snapshot {snapshot_at:%Y-%m-%d})" if snapshot_at else ""
        ax.text(0.5, 0.5, f"No consent events recorded{when}.", ha="center", va="center")
        ax.set_title("Consent events (effective time)")
        return _png(fig)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    colours = {"opt_in": "#2e8b57", "opt_out": "#c0392b"}
    for action in ("opt_in", "opt_out"):
        points = [(t, i) for i, (t, a, _) in enumerate(events) if a == action]
        if points:
            ax.scatter(
                [mdates.date2num(t) for t, _ in points],
                [i for _, i in points],
                label=action,
                color=colours[action],
                s=18,
            )
    if snapshot_at is not None:
        ax.axvline(
            float(mdates.date2num(snapshot_at)),
            color="#555",
            linestyle="--",
            label="training snapshot",
        )
    if len(events) <= 5:
        for i, (t, action, subject) in enumerate(events):
            ax.annotate(
                f"{action} {subject} ({t:%Y-%m-%d})",
                (mdates.date2num(t), i),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
        times = [mdates.date2num(t) for t, _, _ in events]
        if snapshot_at is not None:
            times.append(float(mdates.date2num(snapshot_at)))
        ax.set_xlim(min(times) - 15, max(times) + 15)  # days either side, not years
    ax.set_ylim(-0.5, len(events) - 0.5)
    if len(events) <= 10:
        ax.set_yticks(range(len(events)), [str(i + 1) for i in range(len(events))])
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Consent events (effective time)")
    ax.set_ylabel("event #")
    if events or snapshot_at is not None:
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no consent events", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis_date()
    fig.autofmt_xdate()
    return _png(fig)
