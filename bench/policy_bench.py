"""Policy decisions per second: our CompiledPolicy against Cedar (cedarpy) and Rego (regorus).

One run builds a synthetic pack of non-overlapping rules (>= 50), writes the same rules as
Cedar policies and as Rego rules, checks that all engines give the same answer on a sample,
then times each engine on the same requests in the same process. Figures are medians over
several repetitions; ratios are against the fastest peer.

    .venv/bin/python bench/policy_bench.py [--rules 60] [--reps 5] [--markdown]

Needs the `bench` extra (cedarpy, gordon-to-regorus).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cedarpy
import regorus
import yaml

from broker.core.policy import CompiledPolicy, Pack, load_pack_from_text, parse_transform
from broker.core.policy.evaluate import CompiledRule
from broker.core.transforms import flatten_signal, pseudonymise, pseudonymiser_for, release

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
ORGS = [f"org-{i}" for i in range(12)]
PURPOSES = [f"doel-{i}" for i in range(8)]
BASES = [f"grondslag-{i}" for i in range(10)]
CATEGORIES = [f"categorie-{i}" for i in range(12)]
Request = tuple[str, str, str, str, str, dt.datetime]


# --- the synthetic pack -------------------------------------------------------------------


def _catalogue(rng: random.Random) -> dict[str, Any]:
    return {
        "pack": "bench", "version": "1",
        "organisations": {o: {"name": o} for o in ORGS},
        "legal_bases": {b: {"title": b} for b in BASES},
        "purposes": {p: {"title": p} for p in PURPOSES},
        "categories": {c: {"title": c, "subject_types": ["address"],
                           "contributors": rng.sample(ORGS, 3),
                           "legal_bases": rng.sample(BASES, 2), "retention_days": 365}
                       for c in CATEGORIES},
    }


def _keys(rule: dict[str, Any], cats: dict[str, Any]) -> set[tuple[str, ...]]:
    keys: set[tuple[str, ...]] = set()
    for c in rule["categories"]:
        sources = rule.get("sources") or cats[c]["contributors"]
        bases = rule.get("legal_bases") or cats[c]["legal_bases"]
        keys |= set(itertools.product(rule["recipients"], rule["purposes"], [c], sources,
                                      bases))
    return keys


def _candidate(rng: random.Random, index: int, cats: dict[str, Any]) -> dict[str, Any]:
    category = rng.choice(CATEGORIES)
    rule: dict[str, Any] = {
        "id": f"regel-{index}", "description": "synthetic",
        "recipients": rng.sample(ORGS, rng.randint(1, 3)),
        "purposes": rng.sample(PURPOSES, rng.randint(1, 2)), "categories": [category],
        "access": rng.choice(["hit", "aggregate", "disclose"])}
    if rng.random() < 0.5:
        rule["sources"] = rng.sample(cats[category]["contributors"], 1)
    if rng.random() < 0.5:
        rule["legal_bases"] = rng.sample(cats[category]["legal_bases"], 1)
    if rng.random() < 0.6:
        rule["max_age_days"] = rng.choice([90, 365, 730])
    if rng.random() < 0.5:
        rule["valid_from"] = rng.choice(["2026-01-01", "2026-06-01", "2027-01-01"])
        rule["valid_until"] = "2027-12-31"
    return rule


def build_pack(n_rules: int, seed: int = 7) -> Pack:
    rng = random.Random(seed)
    data = _catalogue(rng)
    rules: list[dict[str, Any]] = []
    taken: set[tuple[str, ...]] = set()
    attempt = 0
    while len(rules) < n_rules:
        attempt += 1
        rule = _candidate(rng, attempt, data["categories"])
        keys = _keys(rule, data["categories"])
        if not keys & taken:
            taken |= keys
            rules.append(rule)
    data["rules"] = rules
    return load_pack_from_text({"pack.yaml": yaml.safe_dump(data)})


def build_requests(policy: CompiledPolicy, n: int, seed: int = 11) -> list[Request]:
    """Half the requests hit a rule's key (some then fail on time), half are random."""
    rng = random.Random(seed)
    covered = sorted(policy._index)  # the bench reads the compiled table on purpose
    requests: list[Request] = []
    for i in range(n):
        key = rng.choice(covered) if i % 2 == 0 else (
            rng.choice(ORGS), rng.choice(PURPOSES), rng.choice(CATEGORIES), rng.choice(ORGS),
            rng.choice(BASES))
        observed = NOW - dt.timedelta(days=rng.randint(0, 800))
        requests.append((*key, observed))
    return requests


# --- the same rules for Cedar and Rego ----------------------------------------------------


def _expanded(pack: Pack) -> list[tuple[CompiledRule, str, list[str], list[str]]]:
    """(rule, category, sources, bases) with the pack's defaults filled in."""
    rows = []
    for rule in CompiledPolicy(pack).rules.values():
        for c in rule.rule.categories:
            cat = pack.categories[c]
            rows.append((rule, c, list(rule.rule.sources or cat.contributors),
                         list(rule.rule.legal_bases or cat.legal_bases)))
    return rows


def _recipients(pack: Pack, rule: CompiledRule) -> list[str]:
    return sorted({org for name in rule.rule.recipients for org in pack.expand(name)})


def _time_conditions(rule: CompiledRule, now: str, observed: str) -> list[str]:
    conditions = []
    if rule.not_before is not None:
        conditions.append(f"{now} >= {int(rule.not_before)}")
    if rule.not_after is not None:
        conditions.append(f"{now} < {int(rule.not_after)}")
    if rule.max_age is not None:
        conditions.append(f"{now} - {observed} <= {int(rule.max_age)}")
    return conditions


def cedar_policies(pack: Pack) -> str:
    out = []
    for rule, category, sources, bases in _expanded(pack):
        principals = ", ".join(f'Org::"{o}"' for o in _recipients(pack, rule))
        conditions = [
            f"[{principals}].contains(principal)",
            f'resource == Category::"{category}"',
            f"{json.dumps(rule.rule.purposes)}.contains(context.purpose)",
            f"{json.dumps(sources)}.contains(context.source)",
            f"{json.dumps(bases)}.contains(context.legal_basis)",
            *_time_conditions(rule, "context.now", "context.observed"),
        ]
        out.append(f'@id("{rule.id}")\npermit(principal, action == Action::"access", resource)'
                   f"\nwhen {{ {' && '.join(conditions)} }};")
    return "\n".join(out)


def rego_module(pack: Pack) -> str:
    out = ["package sluis", "import rego.v1", ""]
    for rule, category, sources, bases in _expanded(pack):
        def as_set(items: Sequence[str]) -> str:
            return "{" + ", ".join(json.dumps(i) for i in items) + "}"
        body = [
            f"input.recipient in {as_set(_recipients(pack, rule))}",
            f"input.category == {json.dumps(category)}",
            f"input.purpose in {as_set(rule.rule.purposes)}",
            f"input.source in {as_set(sources)}",
            f"input.legal_basis in {as_set(bases)}",
            *_time_conditions(rule, "input.now", "input.observed"),
        ]
        out.append(f"decision contains {json.dumps(rule.id)} if {{\n  "
                   + "\n  ".join(body) + "\n}\n")
    return "\n".join(out)


# --- the engines, each answering a rule id or None ----------------------------------------


def ours(policy: CompiledPolicy) -> Callable[[Request], str | None]:
    decide = policy.decide

    def answer(r: Request) -> str | None:
        rule = decide(r[0], r[1], r[2], r[3], r[4], r[5], NOW)
        return None if rule is None else rule.id
    return answer


def _cedar_request(r: Request) -> dict[str, Any]:
    return {"principal": f'Org::"{r[0]}"', "action": 'Action::"access"',
            "resource": f'Category::"{r[2]}"',
            "context": {"purpose": r[1], "source": r[3], "legal_basis": r[4],
                        "now": int(NOW.timestamp()), "observed": int(r[5].timestamp())}}


def _cedar_answer(result: cedarpy.AuthzResult) -> str | None:
    if not result.allowed:
        return None
    ids = list(result.diagnostics.id_annotations_by_reason.values())
    assert len(ids) == 1, ids
    return str(ids[0])


def cedar(policies: Any, entities: Any) -> Callable[[Request], str | None]:
    def answer(r: Request) -> str | None:
        return _cedar_answer(cedarpy.is_authorized(_cedar_request(r), policies, entities))
    return answer


def _rego_input(r: Request) -> dict[str, Any]:
    return {"recipient": r[0], "purpose": r[1], "category": r[2], "source": r[3],
            "legal_basis": r[4], "now": int(NOW.timestamp()), "observed": int(r[5].timestamp())}


def _one(ids: Any) -> str | None:
    ids = list(ids or [])
    assert len(ids) <= 1, ids
    return str(ids[0]) if ids else None


def rego_engine(module: str) -> Callable[[Request], str | None]:
    engine = regorus.Engine()
    engine.add_policy("sluis.rego", module)

    def answer(r: Request) -> str | None:
        engine.set_input(_rego_input(r))
        return _one(engine.eval_rule("data.sluis.decision"))
    return answer


def rego_vm(module: str) -> Callable[[Request], str | None]:
    program = regorus.Program.compile_from_modules("{}", [("sluis.rego", module)],
                                                   ["data.sluis.decision"])
    vm = regorus.Rvm()
    vm.load_program(program)

    def answer(r: Request) -> str | None:
        vm.set_input_json(json.dumps(_rego_input(r)))
        return _one(json.loads(vm.execute()))
    return answer


# --- timing -------------------------------------------------------------------------------


def per_second(run: Callable[[], int], reps: int) -> float:
    """Median decisions per second of `run` (which returns how many it made)."""
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def loop(answer: Callable[[Request], str | None], requests: Sequence[Request],
         rounds: int = 1) -> Callable[[], int]:
    def run() -> int:
        for _ in range(rounds):
            for r in requests:
                answer(r)
        return rounds * len(requests)
    return run


def ours_inline(policy: CompiledPolicy, requests: Sequence[Request],
                rounds: int) -> Callable[[], int]:
    """Our engine as the service calls it: the bound method, no wrapper function."""
    decide = policy.decide

    def run() -> int:
        for _ in range(rounds):
            for a, b, c, d, e, observed in requests:
                decide(a, b, c, d, e, observed, NOW)
        return rounds * len(requests)
    return run


def cedar_batch(policies: Any, entities: Any, requests: Sequence[Request]) -> Callable[[], int]:
    prepared = [_cedar_request(r) for r in requests]

    def run() -> int:
        cedarpy.is_authorized_batch(prepared, policies, entities)
        return len(prepared)
    return run


def micro(fn: Callable[[], object], reps: int, n: int = 50_000) -> float:
    """Median µs per call of `fn`."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def transform_costs(reps: int) -> dict[str, float]:
    """µs per pseudonym and per released signal (examples after docs/policy.md and docs/api.md)."""
    key = bytes(range(32))
    bound = pseudonymiser_for(key, "gemeente", "integrale-controle")
    signal = flatten_signal({
        "subject": {"type": "person", "bsn": "111222333", "birthdate": "1984-05-17"},
        "location": {"postcode": "1012AB", "house_number": 12},
        "observed_at": "2026-11-20T09:00:00+01:00",
        "attributes": {"kwh_per_month": 2400, "meter_seal_broken": True}})
    fields = {path: parse_transform(t) for path, t in {
        "subject.bsn": "pseudonymise", "subject.birthdate": {"generalise": {"age_band": 10}},
        "location.postcode": "reveal", "location.house_number": "reveal",
        "observed_at": {"generalise": "month"},
        "attributes.kwh_per_month": {"generalise": {"bucket": 500}},
        "attributes.meter_seal_broken": "reveal"}.items()}
    today = NOW.date()
    return {
        "pseudonym, per-request pseudonymiser": micro(
            lambda: bound.pseudonymise("subject.bsn", "111222333"), reps),
        "pseudonym, `pseudonymise(key, ...)`": micro(
            lambda: pseudonymise(key, "gemeente", "integrale-controle", "subject.bsn",
                                 "111222333"), reps),
        "release of one signal, 7 fields (1 pseudonym)": micro(
            lambda: release(fields, signal, recipient="gemeente",
                            purpose="integrale-controle", pseudonym_key=key, today=today,
                            pseudonymiser=bound), reps, 20_000),
    }


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info
                          if line.startswith("model name")), model)
    except OSError:
        pass
    return {"date": dt.date.today().isoformat(), "nproc": str(os.cpu_count()), "cpu": model,
            "python": platform.python_version(),
            "cedarpy": _version("cedarpy"), "regorus": _version("gordon-to-regorus")}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, default=60)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)

    pack = build_pack(args.rules)
    policy = CompiledPolicy(pack)
    requests = build_requests(policy, args.requests)
    cedar_set = cedarpy.PolicySet.from_str(cedar_policies(pack))
    entities = cedarpy.Entities.from_json_str("[]")
    module = rego_module(pack)
    engines = {"ours": ours(policy), "cedar": cedar(cedar_set, entities),
               "rego-engine": rego_engine(module), "rego-vm": rego_vm(module)}

    # Same answers first, on every request of the sample.
    expected = [engines["ours"](r) for r in requests]
    for name, answer in engines.items():
        got = [answer(r) for r in requests]
        mismatches = sum(a != b for a, b in zip(expected, got, strict=True))
        if mismatches:
            print(f"{name}: {mismatches} answers differ from ours", file=sys.stderr)
            return 1
    granted = sum(e is not None for e in expected)

    rounds = max(1, 400_000 // len(requests))
    matching = [r for r in requests if r[:5] in policy._index]
    rates = {
        "ours": per_second(ours_inline(policy, requests, rounds), args.reps),
        "ours, only requests matching a rule's key": per_second(
            ours_inline(policy, matching, max(1, 400_000 // len(matching))), args.reps),
        "cedar (is_authorized)": per_second(loop(engines["cedar"], requests), args.reps),
        "cedar (is_authorized_batch)": per_second(cedar_batch(cedar_set, entities, requests),
                                                  args.reps),
        "rego (regorus Engine)": per_second(loop(engines["rego-engine"], requests), args.reps),
        "rego (regorus RVM)": per_second(loop(engines["rego-vm"], requests), args.reps),
    }
    best_peer = max(v for k, v in rates.items() if not k.startswith("ours"))
    info = machine()
    report(info, args, pack, granted, len(requests), rates, best_peer, args.markdown)
    print("\n| transform step | µs (median) |\n| --- | ---: |")
    for name, micros in transform_costs(args.reps).items():
        print(f"| {name} | {micros:.2f} |")
    return 0


def report(info: dict[str, str], args: argparse.Namespace, pack: Pack, granted: int,
           sample: int, rates: dict[str, float], best_peer: float, markdown: bool) -> None:
    lines = [
        f"- date {info['date']}; machine: {info['nproc']} cores, {info['cpu']}; "
        f"Python {info['python']}; cedarpy {info['cedarpy']}; "
        f"regorus (gordon-to-regorus) {info['regorus']}",
        f"- pack: {len(pack.rules)} rules, 12 recipients, 8 purposes, 12 categories; "
        f"{sample} requests, {granted} granted; answers checked equal on all of them",
        f"- medians of {args.reps} repetitions, one thread, one process",
        "",
        "| engine | decisions/s | µs/decision | ours ÷ engine |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rate in rates.items():
        lines.append(f"| {name} | {rate:,.0f} | {1e6 / rate:.2f} | "
                     f"{rates['ours'] / rate:.1f}x |")
    lines.append("")
    lines.append(f"Ours vs the fastest peer: {rates['ours'] / best_peer:.1f}x "
                 f"(target >= 3x); ours vs 1,000,000/s target: "
                 f"{'met' if rates['ours'] >= 1e6 else 'NOT met'}.")
    if markdown:
        print("## Policy decisions\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
