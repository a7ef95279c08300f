"""The tables bench/features.py prints after its JSON."""

from __future__ import annotations

from typing import Any

from bench.figures import print_table

WHO = {"crossings": "crossings", "tipg": "TiPG", "raw_sql": "SQL floor"}


def table(result: dict[str, Any]) -> None:
    print()
    print_table(
        [
            "case", "server", "req/s", "round med", "round range", "p50 ms", "p99 ms", "KB/resp",
            "srv ms/req", "pg ms/req", "client ms/req", "non-2xx",
        ],
        [row for name, case in result["cases"].items() for row in _detail_rows(name, case)],
    )  # fmt: skip
    print()
    print_table(
        [
            "case", "aim", "crossings/s", "TiPG/s", "x TiPG", "x TiPG by round", "aim met",
            "SQL floor/s", "x floor", "features c/t/sql", "TiPG matched",
        ],
        [_ratio_row(name, case) for name, case in result["cases"].items()],
    )  # fmt: skip
    floor = result.get("framework_floor") or {}
    if floor:
        print()
        print_table(
            ["framework floor", "path", "req/s", "round range", "p50 ms", "p99 ms", "srv ms/req"],
            [_floor_row(who, s) for who, s in floor.items()],
        )
        for line in _floor_notes(result):
            print(line)
    if result["mismatches"]:
        print("\nMISMATCHES:")
        for problem in result["mismatches"]:
            print(f"  {problem}")
    else:
        print("\nsanity: every server measured and the SQL floor returned the same features")
    for note in result["notes"]:
        print(f"note: {note}")


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 2)


def _detail_rows(name: str, case: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for who, label in WHO.items():
        s = case.get(who)
        if s is None:
            continue
        rounds, latency, cpu = s["round_requests_per_s"], s["latency_ms"], s["cpu_us_per_request"]
        size = s["bytes_per_response"]
        rows.append(
            [
                name, label, s["requests_per_s"], rounds["median"],
                f"{rounds['min']:,.1f}-{rounds['max']:,.1f}", latency["p50"], latency["p99"],
                None if size is None else round(size["median"] / 1024, 1),
                _ms(cpu["server"]), _ms(cpu["postgres"]), _ms(cpu["client"]), s["non_2xx"],
            ]
        )  # fmt: skip
    return rows


def _ratio_row(name: str, case: dict[str, Any]) -> list[Any]:
    c, t, raw = case.get("crossings"), case.get("tipg"), case.get("raw_sql")
    vs_tipg = case.get("ratio_crossings_to_tipg")
    vs_raw = case.get("ratio_crossings_to_raw_sql")
    rounds = vs_tipg["rounds"] if vs_tipg else None
    features = "/".join(_values(case, who, "features") or "-" for who in WHO)
    matched = _values(case, "tipg", "number_matched")
    return [
        name,
        f"{case['aim_crossings_over_tipg']:g}x",
        c and c["requests_per_s"],
        t and t["requests_per_s"],
        vs_tipg and vs_tipg["overall"],
        rounds and f"{rounds['median']:.2f} ({rounds['min']:.2f}-{rounds['max']:.2f})",
        None
        if vs_tipg is None
        else ("yes" if vs_tipg["overall"] >= case["aim_crossings_over_tipg"] else "NO"),
        raw and raw["requests_per_s"],
        vs_raw and vs_raw["overall"],
        _short(features),
        _short(matched) if matched else None,
    ]


def _values(case: dict[str, Any], who: str, key: str) -> str:
    """Every value of ``key`` any query of the case got from ``who``, comma-separated."""
    values = {n for answer in case["answers"].values() for n in answer.get(who, {}).get(key, [])}
    return ",".join(str(n) for n in sorted(values))


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _floor_row(who: str, s: dict[str, Any]) -> list[Any]:
    rounds = s["round_requests_per_s"]
    return [
        WHO[who], s["path"], s["requests_per_s"], f"{rounds['min']:,.1f}-{rounds['max']:,.1f}",
        s["latency_ms"]["p50"], s["latency_ms"]["p99"], _ms(s["cpu_us_per_request"]["server"]),
    ]  # fmt: skip


def _floor_notes(result: dict[str, Any]) -> list[str]:
    """For each case, what its aim asks of crossings as a share of crossings' own floor."""
    floor = result["framework_floor"].get("crossings")
    if floor is None:
        return []
    lines = []
    for name, case in result["cases"].items():
        tipg = case.get("tipg")
        if tipg is None:
            continue
        needed = case["aim_crossings_over_tipg"] * tipg["requests_per_s"]
        share = needed / floor["requests_per_s"]
        lines.append(
            f"{name}: the aim needs {needed:,.0f} req/s, {share:.0%} of crossings' floor"
            f" ({floor['requests_per_s']:,.0f} req/s)"
        )
    return lines
