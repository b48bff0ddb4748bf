"""Credits file for a checkpoint: every member whose licence asks for attribution."""

from __future__ import annotations

from provenance.audit.licence_report import LicenceReport, licence_ids, licence_url, obligations


def attribution_rows(report: LicenceReport) -> list[dict[str, str]]:
    rows = []
    for member in report.members:
        needs = [
            o for o in obligations(member.concluded_at_snapshot) if o.startswith("attribution")
        ]
        if not needs:
            continue
        ids = licence_ids(member.concluded_at_snapshot)
        rows.append(
            {
                "title": member.title or "(untitled)",
                "artist": ", ".join(member.artists) or "(no named artist)",
                "licence": member.concluded_at_snapshot,
                "licence_url": " ".join(u for u in (licence_url(i) for i in ids) if u),
                "source": member.source_url or member.source_uri or "",
                "sha256": member.sha256,
            }
        )
    return rows


def attribution_text(report: LicenceReport) -> str:
    """A plain-text CREDITS file, one block per recording."""
    lines = [
        f"Credits for the training data of checkpoint {report.checkpoint_id}",
        f"(checkpoint sha256 {report.checkpoint_sha256})",
        "",
        "This model was trained on the following works, used under the licences named.",
        "",
    ]
    for row in attribution_rows(report):
        lines += [
            f'"{row["title"]}" by {row["artist"]}',
            f"  Licence: {row['licence']}"
            + (f" <{row['licence_url']}>" if row["licence_url"] else ""),
            f"  Source: {row['source']}",
            f"  sha256: {row['sha256']}",
            "",
        ]
    share_alike = sorted(
        {
            o
            for m in report.members
            for o in obligations(m.concluded_at_snapshot)
            if o.startswith("share_alike")
        }
    )
    if share_alike:
        lines += ["Share-alike notices:"]
        lines += [
            f"  {o.split(':', 1)[1]}: derivative works of these recordings carry the same "
            "licence terms."
            for o in share_alike
        ]
    return "\n".join(lines) + "\n"
