"""Benchmark: the whole platform, submit → `referral.offered` in the center's inbox, beside a raw
aiokafka chain of as many hops.

Not a test: it prints figures and writes bench/results/pipeline.json and pipeline.png. It starts
its own stack and platform in a temporary directory (every role of every service its own process,
no trace viewer), or measures a running `make up` platform with `--attach`. Partner front ends
(concurrent httpx clients with the demo front end's key) open cases for Germany, give the consents,
upload three text-layer PDFs of 100 KB - 1 MB each (an English pathology report, the German
discharge summary, and an English imaging report or a German lab report: all acceptable for
Germany, so each case goes straight to ready and is referred), wait until intake lists the three
documents, and submit. After a few warm-up cases and an idle spell (what the processes burn with
nothing to do), three phases:

1. fixed arrival rate (`--rate`): the phase's cases are staged first (opened and filled by
   `--clients` front ends, then every document read by translation, as when a patient uploads
   days before submitting; the staging's upload and reading rates are reported too), then case i
   is submitted at `i / rate` exactly, not when the previous one finished. With `--phase1 lead`
   case i is instead opened `--lead` s before its submit, so uploads and reading run alongside
   (a submit whose case is not ready in time goes late, and is counted);
2. staged cases at maximum rate: as many cases again are staged (opened, filled, every document
   read), then `--clients` front ends submit them back to back: the rate the event pipeline
   carries from submit to offer when the documents came before the submit, as they do;
3. whole cases at maximum rate: `--clients` front ends each open, fill and submit whole cases
   back to back, documents and all: the platform's sustained rate for complete cases, uploads
   and document readings included.

Per case it measures submit (the HTTP answer) → `referral.offered` seen on the center's inbox topic
(an aiokafka reader assigned to every inbox from its end, in a process of its own), and per phase
the sustained rate (offered cases per second between the 10th and 90th percentile of offers),
p50/p95/p99 latency, each process's CPU seconds and peak RSS (psutil, the process and its
children, every 0.5 s), CPU seconds per case above idle (and the rate all cores would carry if
CPU were the only limit), every consumer group's lag per topic over time (committed offsets
against log end offsets, every second), and each consumer's handler time by event type (from its
Prometheus metrics). The machine's busy CPU is sampled too: what the platform and the benchmark
did not use was other load on the machine.

Its own platform loads the sample cancer centers with their weekly capacity raised above the
cases of the run (the sample's German centers take 50 a week, so a run would otherwise end in
`case.unroutable`); attached to `make up`, the sample capacities apply.

The floor, measured in the same run: the pipeline has four Kafka hops from submit to offer, each an
outbox row written in a transaction, published by that service's relay and consumed by the next
service (counted from the code, and shown for the first warm-up case: `chain_of_one_warm_up_case`
in the JSON):

    intake API   → case.submitted                 (referrals.cases.v1)           → translation
    translation  → document.language_accepted x3  (referrals.language-checks.v1) → intake
    intake       → case.ready_for_referral        (referrals.cases.v1)           → partners
    partners     → referral.offered               (referrals.partner-inbox.<center>.v1) → center

The floor is the same chain in raw aiokafka with no work (one process, a consumer group and an
idempotent acks=all producer per hop, offsets committed after each batch): the driver produces one
record; hop 1 consumes it and produces three; hop 2 consumes those and produces one after the
third of a case; hop 3 consumes that and produces one, which the reader sees. It runs at the
same arrival rate, and as fast as one producer can send. Pipeline latencies are printed as ratios
to the floor's.

    uv run python bench/pipeline.py [--cases 300] [--rate 10] [--clients 32] [--attach] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import platform as host
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from harness import pct
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
console = Console()

OFFERED = "referrals.referral.offered.v1"
# Outcomes that mean a case will never be offered: the watcher reports them too.
DEAD_ENDS = {
    "referrals.case.unroutable.v1": "unroutable",
    "referrals.document.translation_required.v1": "translation required",
    "referrals.document.unreadable.v1": "unreadable",
}
TARGET_CASES_PER_S = 50.0
TARGET_P99_S = 2.0
CONSENT_VERSION = "2026-01"


def summary(latencies_s: list[float]) -> dict[str, float]:
    if not latencies_s:
        return {"count": 0}
    ms = [v * 1000 for v in latencies_s]
    return {
        "p50_ms": round(pct(ms, 0.50), 1),
        "p95_ms": round(pct(ms, 0.95), 1),
        "p99_ms": round(pct(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "count": len(ms),
    }


def sustained_rate(times: list[float]) -> float:
    """Events per second over the steady part: from the 10th to the 90th percentile event."""
    if len(times) < 10:
        return 0.0
    ordered = sorted(times)
    lo, hi = int(0.1 * len(ordered)), int(0.9 * len(ordered)) - 1
    span = ordered[hi] - ordered[lo]
    return (hi - lo) / span if span > 0 else 0.0


async def sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# ------------------------------------------------------------------------------------ documents
#
# Every name, number and finding below is invented. Each document kind has `--variants` distinct
# texts (generated before the phases, in worker processes); every upload then gets its own
# reference in the PDF's /Subject (same length, so the cross-reference table stays valid), so no two
# uploads have the same bytes.

REF_PLACEHOLDER = "~~REFERENCE~~~~~"  # 16 characters, patched per upload
FIRST_NAMES = ["Olena", "Iryna", "Nataliia", "Oksana", "Tetiana", "Kateryna", "Yuliia", "Halyna"]
LAST_NAMES = [
    "Petrenko",
    "Kovalenko",
    "Bondarenko",
    "Tkachenko",
    "Kravchenko",
    "Oliinyk",
    "Savchuk",
]


def _pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


def _pathology_en(rng: random.Random) -> Any:
    """An English histopathology report: findings, then a block-by-block description."""
    side, quadrant = _pick(rng, "left", "right"), _pick(rng, "upper outer", "upper inner", "lower")
    size = round(rng.uniform(1.2, 4.8), 1)
    grade = rng.choice([1, 2, 2, 3])
    er, pr, ki67 = rng.randint(60, 100), rng.randint(0, 90), rng.randint(8, 45)
    her2 = rng.choice(["0", "1+", "1+", "2+"])
    cores = rng.randint(3, 6)
    yield (
        "Clinical information",
        f"A {rng.randint(34, 72)}-year-old woman with a {size} cm mass in the {quadrant} "
        f"quadrant of the {side} breast, BI-RADS 5 on mammography and ultrasound, and an "
        f"enlarged {side} axillary lymph node. Ultrasound-guided core needle biopsies of the "
        "breast lesion and of the axillary node were taken for diagnosis before treatment.",
    )
    yield (
        "Macroscopic description",
        f"Specimen A, labelled '{side} breast, {quadrant}', consists of {cores} cores of "
        f"white-tan tissue measuring {rng.randint(8, 12)} to {rng.randint(13, 19)} mm in length, "
        f"entirely submitted in cassettes A1 to A{cores}. Specimen B, labelled '{side} axillary "
        f"node', consists of {rng.randint(2, 3)} grey cores up to {rng.randint(9, 14)} mm, "
        "entirely submitted in cassette B1. Cold ischaemia time was recorded as less than one "
        f"hour, and fixation in neutral buffered formalin lasted {rng.randint(8, 48)} hours.",
    )
    yield (
        "Microscopic description",
        "Sections of specimen A show an invasive carcinoma of no special type (ductal), arranged "
        "in nests, cords and trabeculae within a desmoplastic stroma. Tubule formation is seen "
        "in less than ten percent of the tumour, nuclear pleomorphism is "
        f"{_pick(rng, 'mild', 'moderate', 'marked')}"
        f" and {rng.randint(2, 19)} mitoses are counted in ten high-power fields, giving a "
        f"Nottingham grade of {grade}. A minor component of ductal carcinoma in situ of "
        f"{_pick(rng, 'cribriform', 'solid', 'micropapillary')} type is present. No "
        "lymphovascular invasion is identified in the cores. Specimen B shows lymph node tissue "
        "largely replaced by metastatic carcinoma of similar morphology, with extranodal "
        f"extension {_pick(rng, 'not identified', 'not assessable in a core biopsy')}.",
    )
    yield (
        "Immunohistochemistry",
        f"Oestrogen receptor: positive in {er} percent of tumour cells with moderate to strong "
        f"nuclear staining. Progesterone receptor: {'positive' if pr >= 1 else 'negative'} in "
        f"{pr} percent of tumour cells. HER2 (clone 4B5): score {her2}"
        f"{', in situ hybridisation has been requested' if her2 == '2+' else ', negative'}. "
        f"Ki-67 proliferation index: approximately {ki67} percent in hot spots. Cytokeratin 7 "
        "positive, GATA3 positive, E-cadherin retained with membranous staining. External and "
        "internal controls stained as expected.",
    )
    yield (
        "Diagnosis",
        f"{side.capitalize()} breast, core needle biopsy: invasive breast carcinoma of no special "
        f"type, Nottingham grade {grade}, hormone receptor positive, HER2 "
        f"{'equivocal' if her2 == '2+' else 'negative'}. {side.capitalize()} axillary lymph node, "
        "core needle biopsy: metastatic carcinoma consistent with the breast primary.",
    )
    block = 0
    while True:
        block += 1
        cell = _pick(rng, "tumour cells", "carcinoma cells", "neoplastic cells")
        yield (
            f"Block A{block}",
            f"Level sections of block A{block} contain {rng.randint(1, 4)} cores with "
            f"{rng.randint(20, 95)} percent of the tissue area occupied by {cell}. The stroma is "
            f"{_pick(rng, 'densely fibrotic', 'loosely cellular', 'oedematous')} with a "
            f"{_pick(rng, 'sparse', 'moderate', 'brisk')} lymphocytic infiltrate (stromal "
            f"tumour-infiltrating lymphocytes about {rng.randint(1, 40)} percent). Necrosis is "
            f"{_pick(rng, 'absent', 'focal', 'not seen')}. Calcifications are "
            f"{_pick(rng, 'present within the in situ component', 'absent')}. Deeper levels were "
            "examined and confirm the findings described above; the margins of a core biopsy "
            "are not assessed. The block is suitable for further molecular testing, with an "
            f"estimated tumour cellularity of {rng.randint(30, 80)} percent.",
        )


def _discharge_de(rng: random.Random) -> Any:
    """A German discharge summary (Entlassungsbericht): history, findings, day-by-day course."""
    seite = _pick(rng, "linken", "rechten")
    tumor = round(rng.uniform(1.2, 4.8), 1)
    yield (
        "Diagnosen",
        f"Invasives Mammakarzinom der {seite} Brust, cT{rng.randint(1, 3)} cN1 M0, Stadium "
        f"{_pick(rng, 'IIA', 'IIB', 'IIIA')}, Hormonrezeptor positiv, HER2 negativ, Ki-67 "
        f"{rng.randint(8, 45)} Prozent. Nebendiagnosen: arterielle Hypertonie, gut eingestellt; "
        "Zustand nach Appendektomie in der Jugend.",
    )
    yield (
        "Anamnese",
        f"Die Patientin bemerkte vor {rng.randint(2, 9)} Wochen einen tastbaren Knoten in der "
        f"{seite} Brust. Die Mammographie und die Sonographie zeigten einen Herd von {tumor} cm "
        "sowie einen vergrößerten Lymphknoten in der Achselhöhle. Eine familiäre Belastung wird "
        f"{_pick(rng, 'verneint', 'angegeben: die Mutter erkrankte mit 58 Jahren an Brustkrebs')}."
        " Die Patientin ist Nichtraucherin, Allergien sind nicht bekannt.",
    )
    yield (
        "Diagnostik",
        "Die ultraschallgesteuerte Stanzbiopsie bestätigte ein invasives Karzinom ohne speziellen "
        "Typ sowie eine Lymphknotenmetastase. Die Computertomographie von Thorax und Abdomen "
        "ergab keinen Hinweis auf Fernmetastasen, die Skelettszintigraphie war unauffällig. Das "
        "Echokardiogramm zeigte eine normale linksventrikuläre Funktion mit einer "
        f"Ejektionsfraktion von {rng.randint(55, 68)} Prozent.",
    )
    yield (
        "Empfehlung der Tumorkonferenz",
        "Neoadjuvante Chemotherapie mit Anthrazyklinen und Taxanen, anschließend operative "
        "Therapie und Bestrahlung, danach endokrine Therapie über mindestens fünf Jahre. Die "
        "Patientin wünscht eine ärztliche Zweitmeinung zur Möglichkeit einer brusterhaltenden "
        "Operation nach der Chemotherapie.",
    )
    tag = 0
    while True:
        tag += 1
        yield (
            f"Verlauf, Tag {tag}",
            f"Die Patientin ist wach, orientiert und kreislaufstabil, der Blutdruck beträgt "
            f"{rng.randint(110, 145)} zu {rng.randint(65, 90)} mmHg, die Herzfrequenz "
            f"{rng.randint(60, 95)} pro Minute, die Temperatur {rng.uniform(36.2, 37.4):.1f} Grad. "
            + _pick(
                rng,
                "Sie klagt über leichte Übelkeit, die auf Ondansetron gut anspricht.",
                "Sie hat keine Beschwerden und schläft gut.",
                "Sie berichtet über Müdigkeit, sonst keine Beschwerden.",
            )
            + f" Die Wunde an der Biopsiestelle ist reizlos. Laborkontrolle: Hämoglobin "
            f"{rng.uniform(10.5, 14.2):.1f} g/dl, Leukozyten {rng.uniform(3.1, 9.8):.1f} pro nl, "
            f"Thrombozyten {rng.randint(150, 390)} pro nl, Kreatinin {rng.uniform(0.6, 1.1):.2f} "
            "mg/dl. Die Patientin wurde ausführlich über den weiteren Behandlungsplan, mögliche "
            "Nebenwirkungen und die Bedeutung regelmäßiger Kontrollen aufgeklärt; ihre Fragen "
            "wurden beantwortet.",
        )


def _imaging_en(rng: random.Random) -> Any:
    """An English staging CT report, then lesion-by-lesion measurements."""
    yield (
        "Examination",
        "Contrast-enhanced computed tomography of the chest, abdomen and pelvis for staging, "
        f"acquired in the portal venous phase with {_pick(rng, '1.25', '2.5')} mm reconstructions "
        "and multiplanar reformats. No previous examination is available for comparison.",
    )
    yield (
        "Findings",
        f"Chest: an irregular enhancing mass of {rng.uniform(1.5, 4.5):.1f} cm in the breast, "
        f"with an enlarged axillary lymph node of {rng.uniform(1.0, 2.4):.1f} cm in short axis. "
        "No supraclavicular or internal mammary lymphadenopathy. The lungs are clear with no "
        "suspicious nodule; there is no pleural or pericardial effusion. Abdomen and pelvis: the "
        "liver is of normal size with a few small cysts that need no follow-up. The adrenal "
        "glands, pancreas, spleen and kidneys are unremarkable. No ascites and no abdominal "
        "lymphadenopathy. Bones: no lytic or sclerotic lesion suspicious for metastasis.",
    )
    yield (
        "Impression",
        "Locally advanced breast carcinoma with axillary nodal involvement. No evidence of "
        "distant metastatic disease on this examination. Bone scintigraphy is suggested if "
        "clinically indicated.",
    )
    lesion = 0
    while True:
        lesion += 1
        yield (
            f"Measured finding {lesion}",
            f"Series {rng.randint(2, 6)}, image {rng.randint(20, 240)}: a "
            f"{_pick(rng, 'well-defined', 'ill-defined', 'lobulated')} "
            f"{_pick(rng, 'hypodense', 'isodense', 'enhancing')} focus of "
            f"{rng.randint(3, 14)} by {rng.randint(3, 12)} millimetres in the "
            + _pick(
                rng,
                "right hepatic lobe",
                "left lung base",
                "right lung apex",
                "left adrenal gland",
                "fourth lumbar vertebra",
            )
            + f", with an attenuation of {rng.randint(-5, 80)} Hounsfield units. It is "
            + _pick(
                rng, "most likely benign", "indeterminate at this size", "in keeping with a cyst"
            )
            + " and is recorded here as a reference for later examinations. The radiologist "
            "recommends comparison at the next staging scan, using the same protocol and the "
            "same reconstruction kernel, so that any change in size can be measured reliably.",
        )


def _labs_de(rng: random.Random) -> Any:
    """A German lab report: panels with values, reference ranges and a written assessment."""
    yield (
        "Befundbericht",
        "Laborbefund vor Beginn der neoadjuvanten Chemotherapie. Die Proben wurden morgens "
        "nüchtern entnommen und innerhalb von zwei Stunden analysiert. Alle Werte mit "
        "Referenzbereich; auffällige Werte sind im Text beurteilt.",
    )
    panel = 0
    while True:
        panel += 1
        hb, leuko = rng.uniform(10.5, 14.5), rng.uniform(3.0, 10.5)
        lines = [
            f"Hämoglobin {hb:.1f} g/dl (Referenz 12,0 bis 16,0)",
            f"Leukozyten {leuko:.1f} pro nl (Referenz 4,0 bis 10,0)",
            f"Neutrophile Granulozyten {rng.uniform(1.5, 7.5):.1f} pro nl",
            f"Thrombozyten {rng.randint(140, 400)} pro nl (Referenz 150 bis 400)",
            f"Kreatinin {rng.uniform(0.5, 1.2):.2f} mg/dl, GFR über {rng.randint(60, 90)} ml/min",
            f"Alaninaminotransferase {rng.randint(12, 60)} U/l, Bilirubin "
            f"{rng.uniform(0.2, 1.3):.1f} mg/dl",
        ]
        yield (
            f"Kontrolle {panel}",
            "; ".join(lines)
            + ". Beurteilung: "
            + (
                "Die Leukozyten sind leicht vermindert, eine Kontrolle vor dem nächsten Zyklus "
                "wird empfohlen. "
                if leuko < 4
                else "Das Blutbild liegt im Normbereich. "
            )
            + (
                "Es besteht eine leichte Anämie ohne Behandlungsbedarf; bitte Eisenstatus "
                "bestimmen. "
                if hb < 12
                else "Kein Hinweis auf eine Anämie. "
            )
            + "Die Nieren- und Leberwerte erlauben die geplante Chemotherapie in voller Dosis. "
            "Der Befund wurde mit der behandelnden Ärztin besprochen und der Patientin erklärt.",
        )


@dataclass(frozen=True)
class DocKind:
    key: str
    kind: str
    """records' document kind"""
    language: str
    file_name: str
    title: str
    institution: str
    pages: tuple[int, int]
    images: str
    """Which image family it carries: micrographs, scans or charts."""


DOC_KINDS = {
    "pathology_en": DocKind(
        "pathology_en",
        "pathology_report",
        "en",
        "pathology-report.pdf",
        "Histopathology report",
        "Kyiv City Clinical Oncology Centre, Department of Pathology (sample, invented)",
        (2, 5),
        "micrographs",
    ),
    "discharge_de": DocKind(
        "discharge_de",
        "discharge_summary",
        "de",
        "entlassungsbericht.pdf",
        "Entlassungsbericht (Übersetzung)",
        "Städtisches onkologisches Zentrum Kyjiw, Brustzentrum (Beispiel, erfunden)",
        (3, 6),
        "scans",
    ),
    "imaging_en": DocKind(
        "imaging_en",
        "imaging_report",
        "en",
        "ct-staging-report.pdf",
        "CT staging report",
        "Kyiv Regional Diagnostic Centre, Radiology (sample, invented)",
        (2, 5),
        "scans",
    ),
    "labs_de": DocKind(
        "labs_de",
        "lab_results",
        "de",
        "laborbefund.pdf",
        "Laborbefund",
        "Zentrallabor, Onkologisches Zentrum Kyjiw (Beispiel, erfunden)",
        (2, 5),
        "charts",
    ),
}
CONTENT = {
    "pathology_en": _pathology_en,
    "discharge_de": _discharge_de,
    "imaging_en": _imaging_en,
    "labs_de": _labs_de,
}
CAPTIONS = {
    "micrographs": (
        "Figure {n}: representative field of the invasive carcinoma, haematoxylin and eosin "
        "stain, original magnification x{m}.",
        "Abbildung {n}: repräsentatives Gesichtsfeld, Hämatoxylin-Eosin-Färbung, x{m}.",
    ),
    "scans": (
        "Figure {n}: axial image at the level of the finding described, window width {m}.",
        "Abbildung {n}: axiale Schicht in Höhe des beschriebenen Befundes, Fensterbreite {m}.",
    ),
    "charts": (
        "Figure {n}: course of the blood counts before treatment, {m} samples.",
        "Abbildung {n}: Verlauf des Blutbildes vor Therapiebeginn, {m} Messungen.",
    ),
}


def _image(family: str, seed: int) -> bytes:
    """One invented picture: a colour micrograph-like or grey scan-like JPEG, or a PNG chart."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    if family == "charts":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=int(rng.integers(90, 200)))
        days = np.arange(30)
        for label in ("Hb", "Leukozyten", "Thrombozyten / 30"):
            ax.plot(days, rng.normal(10, 1.5, 30).cumsum() / 30 + rng.uniform(4, 12), label=label)
        ax.set_xlabel("Tag")
        ax.legend(loc="upper right")
        out = io.BytesIO()
        fig.savefig(out, format="png")
        plt.close(fig)
        return out.getvalue()
    width = int(rng.integers(500, 1500))
    height = int(width * rng.uniform(0.65, 0.8))
    coarse = rng.random((height // 12 + 1, width // 12 + 1))
    smooth = np.asarray(
        Image.fromarray((coarse * 255).astype("uint8")).resize((width, height), Image.BICUBIC),
        dtype=np.float32,
    )
    smooth /= 255.0
    grain = rng.random((height, width), dtype=np.float32) * float(rng.uniform(0.1, 0.35))
    if family == "micrographs":  # pink stroma, purple nuclei
        rgb = np.stack(
            [0.92 - 0.35 * smooth + grain, 0.62 - 0.5 * smooth + grain, 0.8 - 0.2 * smooth + grain],
            axis=-1,
        )
        picture = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype("uint8"))
    else:  # a grey slice: a bright disc with texture on black
        yy, xx = np.mgrid[0:height, 0:width]
        disc = (
            (xx - width / 2) ** 2 / (0.42 * width) ** 2
            + (yy - height / 2) ** 2 / (0.4 * height) ** 2
        ) < 1
        grey = np.where(disc, 0.25 + 0.5 * smooth + grain, grain * 0.2)
        picture = Image.fromarray((np.clip(grey, 0, 1) * 255).astype("uint8"))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=int(rng.integers(72, 92)))
    return out.getvalue()


_IMAGE_CACHE: dict[tuple[str, int], bytes] = {}
IMAGES_PER_FAMILY = 8


def _images(family: str, seed: int) -> list[bytes]:
    found = []
    for n in range(IMAGES_PER_FAMILY):
        key = (family, seed * 100 + n)
        if key not in _IMAGE_CACHE:
            _IMAGE_CACHE[key] = _image(family, seed * 100 + n)
        found.append(_IMAGE_CACHE[key])
    return found


def make_document(key: str, variant: int, seed: int) -> bytes:
    """One variant of a document kind: a multi-page text-layer PDF of 100 KB - 1 MB, with the
    reference placeholder in its /Subject. Every page has a text layer (a header and body text),
    so translation reads it without OCR, as it would a hospital's export."""
    import matplotlib
    from fpdf import FPDF

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    spec = DOC_KINDS[key]
    rng = random.Random(f"{seed}-{key}-{variant}")
    patient = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    born = rng.randint(1950, 1995)
    target_pages = rng.randint(*spec.pages)
    target_bytes = int(10 ** rng.uniform(5.1, 6.0))  # at most 125 KB - 1 MB, log-uniform
    german = spec.language == "de"

    class Document(FPDF):
        def header(self) -> None:
            self.set_font("DejaVu", "", 8)
            self.cell(0, 5, spec.institution, new_x="LMARGIN", new_y="NEXT")
            who = "Patientin" if german else "Patient"
            self.cell(
                0,
                5,
                f"{who}: {patient} ({'geb.' if german else 'born'} {born}), "
                f"{'Seite' if german else 'page'} {self.page_no()}/{{nb}}",
                new_x="LMARGIN",
                new_y="NEXT",
            )
            self.ln(2)

    pdf = Document(format="A4")
    pdf.set_title(spec.title)
    pdf.set_subject(f"Reference {REF_PLACEHOLDER}")  # ASCII: written as a literal string
    pdf.set_creator("referrals bench (invented sample data)")
    pdf.add_font("DejaVu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.set_margins(18, 15, 18)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 13)
    pdf.multi_cell(0, 7, spec.title.upper(), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    room = target_bytes - 28_000 - 1_500 * target_pages  # fonts and text take about this
    chosen = []
    for picture in sorted(_images(spec.images, seed), key=len, reverse=True):
        if len(picture) <= room:  # the largest pictures that still fit
            chosen.append(picture)
            room -= len(picture)
    rng.shuffle(chosen)
    sections = CONTENT[key](rng)
    figure = 0
    every = max(1, (target_pages * 3) // (len(chosen) + 1)) if chosen else 0
    written = 0
    while pdf.page_no() < target_pages or figure < len(chosen):
        heading, text = next(sections)
        pdf.set_font("DejaVu", "B", 10)
        pdf.multi_cell(0, 5, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 10)
        pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        written += 1
        if figure < len(chosen) and written % every == 0:
            width = rng.randint(110, 160)
            pdf.image(io.BytesIO(chosen[figure]), w=width)
            figure += 1
            caption = CAPTIONS[spec.images][1 if german else 0]
            pdf.set_font("DejaVu", "", 9)
            pdf.multi_cell(
                0,
                5,
                caption.format(n=figure, m=rng.choice([100, 200, 400])),
                new_x="LMARGIN",
                new_y="NEXT",
            )
            pdf.ln(2)
        if pdf.page_no() > target_pages + 4:
            break
    data = bytes(pdf.output())
    assert data.count(REF_PLACEHOLDER.encode()) == 1, "the reference must be patchable"
    return data


class DocumentSet:
    """The variants of each kind, and the three documents of case `i` with their own bytes."""

    def __init__(self, variants: dict[str, list[bytes]]) -> None:
        self.variants = variants

    @classmethod
    def generate(cls, count: int, seed: int) -> DocumentSet:
        jobs = [(key, v) for key in DOC_KINDS for v in range(count)]
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            made = list(
                pool.map(
                    make_document, [k for k, _ in jobs], [v for _, v in jobs], [seed] * len(jobs)
                )
            )
        variants: dict[str, list[bytes]] = defaultdict(list)
        for (key, _), data in zip(jobs, made, strict=True):
            variants[key].append(data)
        return cls(dict(variants))

    def for_case(self, i: int, case_id: str) -> list[tuple[DocKind, bytes]]:
        third = "imaging_en" if i % 2 == 0 else "labs_de"
        docs = []
        for j, key in enumerate(("pathology_en", "discharge_de", third)):
            pool = self.variants[key]
            data = pool[(i * 7 + j * 3) % len(pool)]
            ref = hashlib.sha256(f"{case_id}/{j}".encode()).hexdigest()[:16]
            docs.append((DOC_KINDS[key], data.replace(REF_PLACEHOLDER.encode(), ref.encode(), 1)))
        return docs

    def sizes(self) -> dict[str, Any]:
        every = [len(d) for pool in self.variants.values() for d in pool]
        return {
            "variants_per_kind": len(next(iter(self.variants.values()))),
            "min_KB": round(min(every) / 1024),
            "median_KB": round(statistics.median(every) / 1024),
            "max_KB": round(max(every) / 1024),
            "by_kind_median_KB": {
                k: round(statistics.median(len(d) for d in pool) / 1024)
                for k, pool in self.variants.items()
            },
        }


# ------------------------------------------------------------------------ helper processes
#
# The reader of the inboxes (and the floor's last topic) and the floor's hops run in processes of
# their own (`--role`), so the front ends' work in this process never delays when an offer is seen.
# Times are wall-clock times (time.time()) on this one machine.


async def _assign_from_end(consumer: AIOKafkaConsumer, names: list[str]) -> list[TopicPartition]:
    partitions: list[TopicPartition] = []
    for name in names:
        found: set[int] | None = None
        for _ in range(100):  # a topic made a moment ago may not be in the metadata yet
            # aiokafka exposes partition counts only through its client's metadata.
            cluster = await consumer._client.fetch_all_metadata()
            found = cluster.partitions_for_topic(name)
            if found:
                break
            await asyncio.sleep(0.1)
        if not found:
            raise RuntimeError(f"topic {name} does not exist")
        partitions += [TopicPartition(name, p) for p in sorted(found)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return partitions


def _event_type(value: bytes | None) -> str:
    """The `type` of a structured-mode CloudEvent record ("" for anything else)."""
    try:
        envelope = json.loads(value or b"")
    except ValueError:
        return ""
    kind = envelope.get("type") if isinstance(envelope, dict) else None
    return kind if isinstance(kind, str) else ""


async def watch(bootstrap: str, names: list[str], wanted: set[str]) -> None:
    """Print `[wall time, type, key]` for every record of `names` whose CloudEvents `type` is in
    `wanted` (every record if `wanted` is empty), after a `ready` line. Events are in structured
    mode: the type is read from the value (the envelope), not from a header."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="bench-watcher"
    )
    await consumer.start()
    try:
        await _assign_from_end(consumer, names)
        print(json.dumps("ready"), flush=True)
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            lines = []
            for records in batch.values():
                for r in records:
                    kind = _event_type(r.value)
                    if not wanted or kind in wanted:
                        lines.append(json.dumps([now, kind, (r.key or b"").decode()]))
            if lines:
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
    finally:
        await consumer.stop()


FLOOR_PAYLOADS = (1300, 700, 1100, 1500)
"""Bytes per record on each floor topic, about the size of the pipeline's events there."""


async def floor_hops(bootstrap: str, names: list[str], group: str) -> None:
    """The floor's three hops, each a consumer group member with its own producer; `names` are
    the four topics of the chain. Prints `ready` once every hop has its partitions."""
    hops = []
    for i in range(3):
        consumer = AIOKafkaConsumer(
            names[i],
            bootstrap_servers=bootstrap,
            group_id=f"{group}-hop{i + 1}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1
        )
        await consumer.start()
        await producer.start()
        hops.append((consumer, producer))
    try:
        for consumer, _ in hops:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=200)
            for tp in consumer.assignment():
                await consumer.position(tp)
        print(json.dumps("ready"), flush=True)
        seen: Counter[bytes] = Counter()

        async def run(i: int) -> None:
            consumer, producer = hops[i]
            out, payload = names[i + 1], b"x" * FLOOR_PAYLOADS[i + 1]
            while True:
                batch = await consumer.getmany(timeout_ms=100, max_records=200)
                sends = []
                for records in batch.values():
                    for r in records:
                        if i == 0:  # translation: three verdicts per case
                            copies = 3
                        elif i == 1:  # intake: ready after the third verdict
                            seen[r.key] += 1
                            copies = 1 if seen[r.key] == 3 else 0
                        else:  # partners: the offer
                            copies = 1
                        for _ in range(copies):
                            sends.append(await producer.send(out, payload, key=r.key))
                if sends:
                    await asyncio.gather(*sends)
                if batch:
                    await consumer.commit()

        await asyncio.gather(*(run(i) for i in range(3)))
    finally:
        for consumer, producer in hops:
            await consumer.stop()
            await producer.stop()


class Helper:
    """One helper process (`--role`) and the lines it prints, read as they come."""

    def __init__(self, name: str, argv: list[str], on_line: Any = None) -> None:
        self.name = name
        self.argv = argv
        self.on_line = on_line
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if json.loads(line or b'""') != "ready":
            raise RuntimeError(f"{self.name} did not start")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if self.on_line is not None:
                self.on_line(json.loads(line))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


# ---------------------------------------------------------------------------------- sampling


class ResourceSampler:
    """Every `interval` s, each watched process tree's CPU seconds (user + system, summed over
    every process ever seen in the tree, so recycled workers still count) and resident memory
    (RSS summed over the tree), the machine's busy CPU, and its load average."""

    def __init__(self, roots: dict[str, int], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float], dict[str, int], float]] = []
        self.loadavg: list[tuple[float, tuple[float, float, float]]] = []
        self._cpu: dict[str, dict[int, float]] = defaultdict(dict)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="resources")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _trees(self) -> dict[str, list[psutil.Process]]:
        """Each root's process tree, from one pass over the process table (psutil's
        `children()` would read the whole table once per root)."""
        procs: dict[int, psutil.Process] = {}
        kids: dict[int, list[int]] = defaultdict(list)
        for proc in psutil.process_iter(["ppid"]):
            procs[proc.pid] = proc
            kids[proc.info["ppid"]].append(proc.pid)
        trees = {}
        for name, pid in list(self.roots.items()):
            found, todo = [], [pid]
            while todo:
                current = todo.pop()
                if current in procs:
                    found.append(procs[current])
                # The driver started the platform: its children are counted as themselves.
                if name != "bench-driver":
                    todo += kids.get(current, [])
            trees[name] = found
        return trees

    def _run(self) -> None:
        last_load = 0.0
        while not self._stop.is_set():
            now = time.time()
            cpu: dict[str, float] = {}
            rss: dict[str, int] = {}
            for name, tree in self._trees().items():
                total_rss = 0
                for proc in tree:
                    try:
                        with proc.oneshot():
                            times = proc.cpu_times()
                            total_rss += proc.memory_info().rss
                        self._cpu[name][proc.pid] = times.user + times.system
                    except psutil.Error:
                        continue
                cpu[name] = sum(self._cpu[name].values())
                rss[name] = total_rss
            machine = psutil.cpu_times()
            busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq
            self.samples.append((now, cpu, rss, busy + getattr(machine, "steal", 0.0)))
            if now - last_load >= 5:
                self.loadavg.append((now, os.getloadavg()))
                last_load = now
            self._stop.wait(max(0.0, self.interval - (time.time() - now)))

    def window(self, start: float, end: float) -> dict[str, Any]:
        """CPU seconds and peak RSS per tree between two wall times, and the machine's share."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        seconds = last[0] - first[0]
        per = {}
        for name in list(self.roots):
            cpu_s = last[1].get(name, 0.0) - first[1].get(name, 0.0)
            per[name] = {
                "cpu_s": round(cpu_s, 2),
                "cores": round(cpu_s / seconds, 3),
                "peak_rss_MiB": round(max(s[2].get(name, 0) for s in inside) / 2**20, 1),
            }
        machine = last[3] - first[3]
        ours = sum(v["cpu_s"] for v in per.values())
        loads = [load[0] for t, load in self.loadavg if start <= t <= end]
        return {
            "seconds": round(seconds, 1),
            "processes": per,
            "machine_busy_cpu_s": round(machine, 1),
            "machine_busy_cores": round(machine / seconds, 2),
            "measured_processes_cpu_s": round(ours, 1),
            "other_load_cpu_s": round(max(0.0, machine - ours), 1),
            "loadavg_1min_max": max(loads) if loads else None,
        }

    def cores_series(self, step: float = 1.0) -> tuple[list[float], dict[str, list[float]]]:
        """Cores used per tree over time (one point per `step` s), for the plot."""
        times: list[float] = []
        series: dict[str, list[float]] = defaultdict(list)
        previous = None
        for sample in self.samples:
            if previous is not None and sample[0] - previous[0] < step:
                continue
            if previous is not None:
                dt = sample[0] - previous[0]
                times.append(sample[0])
                for name in list(self.roots):
                    if name in sample[1] and name in previous[1]:
                        used = (sample[1][name] - previous[1][name]) / dt
                    else:
                        used = 0.0
                    series[name].append(max(0.0, used))
                series["machine"].append(max(0.0, (sample[3] - previous[3]) / dt))
            previous = sample
        return times, dict(series)


class LagSampler:
    """Every `interval` s, each platform consumer group's lag per topic: the log end offsets
    minus the group's committed offsets (what a restarted consumer would read again)."""

    def __init__(self, bootstrap: str, interval: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.interval = interval
        self.samples: list[tuple[float, dict[str, dict[str, int]]]] = []
        self.groups: list[str] = []

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="bench-lag"
        )
        await self.consumer.start()
        listed = await self.admin.list_consumer_groups()
        self.groups = sorted(
            g[0] for g in listed if not g[0].startswith(("bench-", "demo-", "sample-"))
        )
        self.coordinators = {g: await self.admin.find_coordinator(g) for g in self.groups}
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.time()
            with contextlib.suppress(Exception):
                self.samples.append((started, await self.sample()))
            await asyncio.sleep(max(0.0, self.interval - (time.time() - started)))

    async def sample(self) -> dict[str, dict[str, int]]:
        committed = await asyncio.gather(
            *(self.admin.list_consumer_group_offsets(g, self.coordinators[g]) for g in self.groups)
        )
        partitions = {tp for offsets in committed for tp in offsets}
        ends = await self.consumer.end_offsets(list(partitions)) if partitions else {}
        lag: dict[str, dict[str, int]] = {}
        for group, offsets in zip(self.groups, committed, strict=True):
            per_topic: dict[str, int] = defaultdict(int)
            for tp, meta in offsets.items():
                if meta.offset >= 0 and tp in ends:
                    per_topic[tp.topic] += max(0, ends[tp] - meta.offset)
            lag[group] = dict(per_topic)
        return lag

    def window(self, start: float, end: float) -> dict[str, int]:
        """The largest total lag of each group between two wall times."""
        peak: dict[str, int] = {}
        for t, lag in self.samples:
            if start <= t <= end:
                for group, topics in lag.items():
                    peak[group] = max(peak.get(group, 0), sum(topics.values()))
        return peak

    async def stop(self) -> None:
        if hasattr(self, "task"):
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()


HANDLER_METRIC = re.compile(
    r"^referrals_consumer_handler_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$", re.M
)


async def scrape_handlers(urls: dict[str, str]) -> dict[tuple[str, str, str], float]:
    """Each consumer's handler time and calls by event type, from its Prometheus metrics
    (`referrals_consumer_handler_duration_seconds`); empty where a process serves none."""
    found: dict[tuple[str, str, str], float] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for name, url in urls.items():
            if not name.endswith("-consumer"):
                continue
            try:
                text = (await client.get(url)).text
            except httpx.HTTPError:
                continue
            for part, labels, value in HANDLER_METRIC.findall(text):
                event = dict(re.findall(r'(\w+)="([^"]*)"', labels)).get("event_type", "")
                found[(name, event, part)] = float(value)
    return found


def handler_window(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per consumer and event type: calls, mean and total handler seconds between two scrapes."""
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (name, event, part), value in after.items():
        if part != "count":
            continue
        calls = value - before.get((name, event, "count"), 0.0)
        total = after.get((name, event, "sum"), 0.0) - before.get((name, event, "sum"), 0.0)
        if calls > 0:
            short = event.removeprefix("referrals.").removesuffix(".v1")
            out[name][short] = {
                "calls": int(calls),
                "mean_ms": round(total / calls * 1000, 1),
                "total_s": round(total, 2),
            }
    return dict(out)


# -------------------------------------------------------------------------------- front ends


@dataclass
class CaseRun:
    """One case as a front end drove it (wall times)."""

    index: int
    phase: str
    case_id: str = ""
    opened: float = 0.0
    due: float | None = None
    """When its submit was scheduled (fixed-rate phase)."""
    submitted: float = 0.0
    """When the submit's HTTP answer arrived: the latency's start."""
    submit_ms: float = 0.0
    prepare_s: float = 0.0
    error: str = ""


ICD10 = ["C50.1", "C50.2", "C50.3", "C50.4", "C50.5", "C50.8", "C50.9"]
STAGES = [("cT1N1M0", "IIA"), ("cT2N0M0", "IIA"), ("cT2N1M0", "IIB"), ("cT3N1M0", "IIIA")]


def case_body(i: int, seed: int) -> dict[str, Any]:
    """The demo's case (a patient in Kyiv asking for an opinion in Germany), varied per case."""
    from devstack.demo import CASE

    rng = random.Random(f"{seed}-case-{i}")
    tnm, group = rng.choice(STAGES)
    return {
        **CASE,
        "diagnosis": {**CASE["diagnosis"], "icd10": rng.choice(ICD10)},
        "stage": {"tnm": tnm, "group": group},
        "destination": {"preference": "countries", "countries": ["DE"]},
        "date_of_birth": f"{rng.randint(1950, 1995)}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}",
        "contact": {
            "email": f"patient-{seed}-{i}@example.org",
            "phone": f"+38050{rng.randint(1000000, 9999999)}",
        },
    }


class FrontEnds:
    """The partner front ends: `clients` concurrent connections to intake and to records, with
    the demo front end's API key; each case then uses its own case access token.

    A request that fails in transport (a keep-alive connection the server closed as it was
    reused) is sent once more, as a front end would: creation and submission carry an
    Idempotency-Key, the same upload twice is one document, and reads are safe."""

    TOKEN_REFRESH_AFTER_S = 600.0
    """Case tokens live 15 minutes; older ones are renewed before a timed phase."""

    def __init__(
        self, apis: dict[str, str], api_key: str, docs: DocumentSet, clients: int, seed: int
    ):
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        timeout = httpx.Timeout(300.0, pool=None)
        self.intake = httpx.AsyncClient(base_url=apis["intake"], timeout=timeout, limits=limits)
        self.records = httpx.AsyncClient(base_url=apis["records"], timeout=timeout, limits=limits)
        self.api_key = api_key
        self.docs = docs
        self.seed = seed
        self.tokens: dict[str, tuple[str, float]] = {}
        self.retries = 0

    async def _call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        for attempt in (1, 2):
            try:
                response = await client.request(method, url, **kwargs)
                break
            except httpx.TransportError:
                if attempt == 2:
                    raise
                self.retries += 1
        if response.is_error:
            raise RuntimeError(
                f"{method} {response.request.url.path} → {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    def _auth(self, case_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[case_id][0]}"}

    async def prepare(self, run: CaseRun) -> None:
        """Open the case, give both consents, upload three documents, and wait until intake
        lists all three (it learns of them from records' events)."""
        run.opened = time.time()
        n = run.index + (0 if run.phase == "fixed" else 100_000)
        created = (
            await self._call(
                self.intake,
                "POST",
                "/v1/cases",
                json=case_body(n, self.seed),
                headers={"X-Api-Key": self.api_key, "Idempotency-Key": str(uuid.uuid4())},
            )
        ).json()
        run.case_id = created["case"]["id"]
        self.tokens[run.case_id] = (created["access_token"], time.time())
        auth = self._auth(run.case_id)
        for kind in ("processing", "cross_border"):
            await self._call(
                self.intake,
                "PUT",
                f"/v1/cases/{run.case_id}/consents/{kind}",
                json={"version": CONSENT_VERSION},
                headers=auth,
            )
        documents = self.docs.for_case(n, run.case_id)
        for spec, content in documents:
            await self._call(
                self.records,
                "POST",
                f"/v1/cases/{run.case_id}/documents",
                data={"kind": spec.kind},
                files={"file": (spec.file_name, content, "application/pdf")},
                headers=auth,
            )
        pause = 0.2
        while True:
            case = await self._call(self.intake, "GET", f"/v1/cases/{run.case_id}", headers=auth)
            if len(case.json()["documents"]) >= len(documents):
                break
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 1.5)
        run.prepare_s = time.time() - run.opened

    async def refresh(self, case_id: str) -> None:
        """A new case token from the front end that opened the case."""
        if time.time() - self.tokens[case_id][1] < self.TOKEN_REFRESH_AFTER_S:
            return
        fresh = await self._call(
            self.intake,
            "POST",
            f"/v1/cases/{case_id}/access-token",
            headers={"X-Api-Key": self.api_key},
        )
        self.tokens[case_id] = (fresh.json()["access_token"], time.time())

    async def submit(self, run: CaseRun) -> None:
        began = time.time()
        await self._call(
            self.intake,
            "POST",
            f"/v1/cases/{run.case_id}/submit",
            headers={**self._auth(run.case_id), "Idempotency-Key": str(uuid.uuid4())},
        )
        run.submitted = time.time()
        run.submit_ms = (run.submitted - began) * 1000
        self.tokens.pop(run.case_id, None)

    async def close(self) -> None:
        await self.intake.aclose()
        await self.records.aclose()


# ------------------------------------------------------------------------------------- bench


class Bench:
    def __init__(self, stack: Any, plat: Any, args: argparse.Namespace, docs: DocumentSet):
        from referrals_common.contracts import topics

        self.stack = stack
        self.platform = plat
        self.args = args
        keys = plat.keys()
        self.centers = sorted(keys["centers"])
        self.inboxes = [topics.partner_inbox(c) for c in self.centers]
        self.watched = [*self.inboxes, topics.ROUTING, topics.LANGUAGE_CHECKS]
        self.front = FrontEnds(plat.apis, str(keys["front_end"]), docs, args.clients, args.seed)
        roots = {name: pid for name, pid in plat.pids.items() if plat.owns(pid)}
        roots |= {name: pid for name, pid in stack.pids.items() if stack.owns(pid)}
        self.sampler = ResourceSampler(roots)
        self.lag = LagSampler(stack.kafka_bootstrap, interval=args.lag_interval)
        self.offered: dict[str, float] = {}
        self.dead_ends: dict[str, str] = {}
        self.floor_seen: dict[str, float] = {}
        self.watcher = Helper(
            "inbox reader",
            [
                "--role",
                "watch",
                "--bootstrap",
                stack.kafka_bootstrap,
                "--topics",
                ",".join(self.watched),
                "--types",
                ",".join([OFFERED, *DEAD_ENDS]),
            ],
            on_line=self._on_pipeline_event,
        )
        self.windows: dict[str, tuple[float, float]] = {}
        self.runs: dict[str, list[CaseRun]] = {}
        self.chain: list[dict[str, Any]] = []
        self.handlers: dict[str, Any] = {}
        self.staging: dict[str, Any] = {}
        self.staging_staged: dict[str, Any] = {}

    def _on_pipeline_event(self, item: list[Any]) -> None:
        at, kind, key = item
        if kind == OFFERED:
            self.offered.setdefault(key, at)
        elif kind in DEAD_ENDS:
            self.dead_ends.setdefault(key, DEAD_ENDS[kind])

    async def start(self) -> None:
        from referrals_common.contracts import topics
        from referrals_common.messaging.kafka import ensure_topics

        await ensure_topics(self.stack.kafka_bootstrap, list(topics.PLATFORM_TOPICS))
        await self.watcher.start()
        self.sampler.roots["bench-driver"] = os.getpid()
        self.sampler.roots["bench-inbox-reader"] = self.watcher.pid
        self.sampler.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.lag.stop()
        self.sampler.stop()
        await self.front.close()

    # --------------------------------------------------------------------------- the phases

    async def settle(self, runs: list[CaseRun], timeout: float) -> float:
        """Until every submitted case was offered or reached a dead end; the time of the last."""
        deadline = time.time() + timeout
        pending = [r for r in runs if r.submitted and not r.error]
        while time.time() < deadline:
            pending = [r for r in pending if r.case_id not in self.offered]
            pending = [r for r in pending if r.case_id not in self.dead_ends]
            if not pending:
                break
            await asyncio.sleep(0.1)
        ends = [self.offered.get(r.case_id) or 0.0 for r in runs]
        return max([*ends, time.time() if pending else 0.0])

    async def warm_up(self) -> None:
        """A few cases one after another (pools, consumer groups, caches), the first of them
        followed on every platform topic to show its chain of events."""
        from devstack.demo import EventWatcher

        began = time.monotonic()
        watcher = EventWatcher(self.stack.kafka_bootstrap, self.centers, began)
        await watcher.start()
        runs = []
        try:
            for i in range(max(1, self.args.warmup)):
                run = CaseRun(900_000 + i, "warm-up")
                await self.front.prepare(run)
                if i == 0:
                    watcher.follow(run.case_id)
                await self.front.submit(run)
                submitted_mono = time.monotonic() - began
                await self.settle([run], 600)
                if i == 0:
                    await asyncio.sleep(1.0)  # the events that follow the offer, for the record
                    self.chain = [
                        {
                            "ms_after_submit": round((e.at - submitted_mono) * 1000, 1),
                            "topic": e.topic,
                            "type": e.type.removeprefix("referrals.").removesuffix(".v1"),
                        }
                        for e in sorted(watcher.seen, key=lambda e: e.at)
                    ]
                runs.append(run)
        finally:
            await watcher.stop()
        missing = [r.case_id for r in runs if r.case_id not in self.offered]
        if missing:
            raise RuntimeError(
                f"warm-up cases were not offered: {missing}; dead ends: {self.dead_ends}"
            )
        latencies = [self.offered[r.case_id] - r.submitted for r in runs]
        console.print(
            f"warm-up: {len(runs)} cases offered, submit → offered "
            + ", ".join(f"{v * 1000:.0f} ms" for v in latencies)
        )

    async def idle(self, seconds: float) -> None:
        """The platform with nothing to do: what its processes burn while waiting."""
        if seconds <= 0:
            return
        console.print(f"[bold]idle[/]: {seconds:g} s with no cases")
        before = await scrape_handlers(self.platform.metrics)
        start = time.time()
        await asyncio.sleep(seconds)
        self.windows["idle"] = (start, time.time())
        self.handlers["idle"] = handler_window(before, await scrape_handlers(self.platform.metrics))

    async def stage(self, runs: list[CaseRun], window: str = "staging") -> dict[str, Any]:
        """Before a phase of staged cases: open and fill every case (`clients` front ends at a
        time), then wait until translation has read every document and intake lists them all,
        so that the phase submits on schedule and times submit → offer alone."""
        console.print(
            f"[bold]{window}[/]: opening {len(runs)} cases and uploading their "
            "documents; waiting until translation has read them all"
        )
        before = await scrape_handlers(self.platform.metrics)
        start = time.time()
        todo = iter(runs)

        async def client() -> None:
            for run in todo:
                try:
                    await self.front.prepare(run)
                except Exception as exc:
                    run.error = f"{type(exc).__name__}: {exc}"[:300]

        await asyncio.gather(*(client() for _ in range(self.args.clients)))
        uploaded = time.time()
        await asyncio.sleep(2 * self.args.lag_interval)
        deadline = time.time() + self.args.drain_timeout
        while time.time() < deadline:
            lag = self.lag.samples[-1][1] if self.lag.samples else {}
            behind = sum(
                lag.get(group, {}).get("referrals.documents.v1", 0)
                for group in ("translation.language-checks", "intake.case-lifecycle")
            )
            if self.lag.samples and self.lag.samples[-1][0] > uploaded and behind == 0:
                break
            await asyncio.sleep(0.5)
        read = time.time()
        handlers = handler_window(before, await scrape_handlers(self.platform.metrics))
        stored = handlers.get("translation-consumer", {}).get("document.stored", {})
        ok = [r for r in runs if not r.error]
        staging = {
            "cases": len(runs),
            "prepared": len(ok),
            "errors": dict(Counter(r.error[:120] for r in runs if r.error)),
            "open_consent_upload_listed_s": round(uploaded - start, 1),
            "until_all_documents_read_s": round(read - start, 1),
            "uploads_per_s": round(3 * len(ok) / (uploaded - start), 2),
            "documents_read_per_s": round(stored.get("calls", 0) / (read - start), 2),
            "translation_document_handler": stored,
            "prepare_per_case": summary([r.prepare_s for r in ok]),
            "resources": self.sampler.window(start, read),
        }
        self.windows[window] = (start, read)
        refresh = [r.case_id for r in ok]
        gate = asyncio.Semaphore(self.args.clients)

        async def renew(case_id: str) -> None:
            async with gate:
                await self.front.refresh(case_id)

        await asyncio.gather(*(renew(c) for c in refresh))
        return staging

    async def fixed_rate(self, n: int, rate: float) -> None:
        """Submits at start + i / rate. Staged (default): every case was opened and filled, and
        its documents read, before; `--phase1 lead`: case i is opened `lead` s before its
        submit is due, so uploads and reading run alongside (a submit whose case is not ready
        by then goes late)."""
        lead = self.args.lead if self.args.phase1 == "lead" else 0.0
        runs = [CaseRun(i, "fixed") for i in range(n)]
        if self.args.phase1 == "ahead":
            self.staging = await self.stage(runs)
        start = time.time() + 0.5

        async def one(run: CaseRun) -> None:
            run.due = start + lead + run.index / rate
            try:
                if self.args.phase1 == "lead":
                    await sleep_until(run.due - lead)
                    await self.front.prepare(run)
                elif run.error:
                    return
                await sleep_until(run.due)
                await self.front.submit(run)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"[:300]

        how = (
            "of staged cases"
            if self.args.phase1 == "ahead"
            else f"(each case opened {lead:g} s before its submit)"
        )
        console.print(f"[bold]phase 1[/]: {n} submits at {rate:g}/s {how}")
        before = await scrape_handlers(self.platform.metrics)
        await asyncio.gather(*(one(r) for r in runs))
        end = await self.settle(runs, self.args.drain_timeout)
        after = await scrape_handlers(self.platform.metrics)
        self.handlers["fixed_rate"] = handler_window(before, after)
        self.runs["fixed_rate"] = runs
        self.windows["fixed_rate"] = (start, end)

    async def staged_max_rate(self, n: int) -> None:
        """Staged cases (opened, filled, every document read) submitted by `clients` front
        ends back to back: how many cases per second the event pipeline carries from submit to
        offer when documents came days before, as they do."""
        runs = [CaseRun(i, "staged") for i in range(n)]
        self.staging_staged = await self.stage(runs, window="staging_2")
        console.print(
            f"[bold]phase 2[/]: {n} staged cases, {self.args.clients} front ends submitting as "
            "fast as they can"
        )
        await self.back_to_back("staged_max_rate", runs, self.front.submit)

    async def max_rate(self, n: int) -> None:
        """`clients` front ends open, fill and submit cases back to back."""
        console.print(
            f"[bold]phase 3[/]: {n} whole cases, {self.args.clients} front ends opening, "
            "filling and submitting as fast as they can"
        )

        async def whole(run: CaseRun) -> None:
            await self.front.prepare(run)
            await self.front.submit(run)

        await self.back_to_back("max_rate", [CaseRun(i, "max") for i in range(n)], whole)

    async def back_to_back(
        self, phase: str, runs: list[CaseRun], step: Callable[[CaseRun], Awaitable[None]]
    ) -> None:
        """`clients` front ends taking the phase's cases in turn, each running `step` on one
        case after another (a case whose staging failed is left out), until all are offered."""
        todo = iter(r for r in runs if not r.error)

        async def client() -> None:
            for run in todo:
                try:
                    await step(run)
                except Exception as exc:
                    run.error = f"{type(exc).__name__}: {exc}"[:300]

        before = await scrape_handlers(self.platform.metrics)
        start = time.time()
        await asyncio.gather(*(client() for _ in range(self.args.clients)))
        end = await self.settle(runs, self.args.drain_timeout)
        after = await scrape_handlers(self.platform.metrics)
        self.handlers[phase] = handler_window(before, after)
        self.runs[phase] = runs
        self.windows[phase] = (start, end)

    async def quiet(self, timeout: float = 60.0) -> None:
        """Between phases: until every consumer group has caught up (or `timeout`)."""
        deadline = time.time() + timeout
        await asyncio.sleep(2.0)
        while time.time() < deadline:
            if self.lag.samples and not any(
                sum(t.values()) for t in self.lag.samples[-1][1].values()
            ):
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)

    def phase_result(self, name: str) -> dict[str, Any]:
        runs = self.runs[name]
        start, end = self.windows[name]
        ok = [r for r in runs if r.submitted and not r.error]
        offered = [r for r in ok if r.case_id in self.offered]
        latencies = [self.offered[r.case_id] - r.submitted for r in offered]
        offer_times = [self.offered[r.case_id] for r in offered]
        submits = [r.submitted for r in ok]
        errors = Counter(r.error[:120] for r in runs if r.error)
        dead = Counter(self.dead_ends[r.case_id] for r in ok if r.case_id in self.dead_ends)
        late = [r.submitted - r.submit_ms / 1000 - r.due for r in ok if r.due is not None]
        result: dict[str, Any] = {
            "cases": len(runs),
            "submitted": len(ok),
            "offered": len(offered),
            "dead_ends": dict(dead),
            "not_offered_in_time": len(ok) - len(offered) - sum(dead.values()),
            "errors": dict(errors),
            "submit_rate_per_s": round(sustained_rate(submits), 2),
            "sustained_offered_per_s": round(sustained_rate(offer_times), 2),
            "overall_offered_per_s": round(len(offered) / (max(offer_times) - min(submits)), 2)
            if offered
            else 0.0,
            "latency_submit_to_offered": summary(latencies),
            "submit_http": summary([r.submit_ms / 1000 for r in ok]),
            "prepare_open_consent_upload_listed": summary([r.prepare_s for r in ok]),
            "seconds": round(end - start, 1),
            "resources": self.sampler.window(start, end),
            "peak_consumer_lag": self.lag.window(start, end),
            "consumer_handlers": self.handlers.get(name, {}),
        }
        result["cpu_per_case"] = self.cpu_per_case(result["resources"], len(offered))
        if late:
            result["submits_late_over_100ms"] = sum(v > 0.1 for v in late)
            result["submit_lateness_max_s"] = round(max(late), 2)
        return result

    def cpu_per_case(self, resources: dict[str, Any], cases: int) -> dict[str, Any]:
        """CPU seconds per offered case by process, above what each burns idle, and the rate
        the machine's cores could carry if CPU were the only limit and nothing else ran."""
        if not resources or not cases:
            return {}
        idle = self.sampler.window(*self.windows["idle"]) if "idle" in self.windows else {}
        idle_cores = {k: v["cores"] for k, v in idle.get("processes", {}).items()}
        platform = [k for k in resources["processes"] if not k.startswith("bench-")]
        work = {
            k: max(
                0.0,
                resources["processes"][k]["cpu_s"] - idle_cores.get(k, 0.0) * resources["seconds"],
            )
            / cases
            for k in platform
        }
        total = sum(work.values())
        spare = (os.cpu_count() or 1) - sum(idle_cores.get(k, 0.0) for k in platform)
        return {
            "platform_cpu_s_per_case_gross": round(
                sum(resources["processes"][k]["cpu_s"] for k in platform) / cases, 3
            ),
            "platform_cpu_s_per_case_above_idle": round(total, 3),
            "by_process_above_idle": {
                k: round(v, 4) for k, v in sorted(work.items(), key=lambda kv: -kv[1]) if v
            },
            "idle_cores": round(sum(idle_cores.get(k, 0.0) for k in platform), 3),
            "cases_per_s_if_cpu_bound_on_all_cores": round(spare / total, 2) if total else None,
        }

    # ------------------------------------------------------------------------------ the floor

    async def floor(self, n: int, rate: float) -> dict[str, Any]:
        """The same four hops in raw aiokafka (see the module doc): at `rate`, then flat out."""
        from referrals_common.messaging.kafka import ensure_topics

        bootstrap = self.stack.kafka_bootstrap
        tag = uuid.uuid4().hex[:6]
        names = [f"bench.floor-{tag}.hop{i}" for i in range(4)]
        await ensure_topics(bootstrap, names, partitions=6, with_dead_letters=False)

        def seen(item: list[Any]) -> None:
            self.floor_seen.setdefault(item[2], item[0])

        hops = Helper(
            "floor hops",
            [
                "--role",
                "floor-hops",
                "--bootstrap",
                bootstrap,
                "--topics",
                ",".join(names),
                "--group",
                f"bench-floor-{tag}",
            ],
        )
        reader = Helper(
            "floor reader",
            ["--role", "watch", "--bootstrap", bootstrap, "--topics", names[3]],
            on_line=seen,
        )
        await hops.start()
        await reader.start()
        self.sampler.roots["bench-floor-hops"] = hops.pid
        self.sampler.roots["bench-floor-reader"] = reader.pid
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1
        )
        await producer.start()
        payload = b"x" * FLOOR_PAYLOADS[0]
        results: dict[str, Any] = {"topics": names}
        try:
            for label, paced in (("fixed_rate", True), ("max_rate", False)):
                sent: dict[str, float] = {}
                start = time.time() + 0.2
                for i in range(n):
                    if paced:
                        await sleep_until(start + i / rate)
                    key = str(uuid.uuid4())
                    sent[key] = time.time()
                    await producer.send(names[0], payload, key=key.encode())
                await producer.flush()
                deadline = time.time() + 120
                while time.time() < deadline and any(k not in self.floor_seen for k in sent):
                    await asyncio.sleep(0.05)
                arrived = [self.floor_seen[k] for k in sent if k in self.floor_seen]
                end = max(arrived) if arrived else time.time()
                results[label] = {
                    "records": n,
                    "arrived": len(arrived),
                    "rate_per_s": rate if paced else None,
                    "send_rate_per_s": round(n / (max(sent.values()) - min(sent.values())), 1),
                    "sustained_per_s": round(sustained_rate(arrived), 1),
                    "latency": summary(
                        [self.floor_seen[k] - t for k, t in sent.items() if k in self.floor_seen]
                    ),
                    "resources": self.sampler.window(start, end),
                }
                self.windows[f"floor_{label}"] = (start, end)
                self.runs[f"floor_{label}"] = [
                    CaseRun(0, label, k, submitted=t) for k, t in sent.items()
                ]
                await asyncio.sleep(2.0)
        finally:
            await producer.stop()
            await hops.stop()
            await reader.stop()
        return results


# ----------------------------------------------------------------------------------- results


def machine_info() -> dict[str, Any]:
    model = host.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_GiB": round(psutil.virtual_memory().total / 2**30, 1),
        "os": host.platform(),
        "python": host.python_version(),
    }


def bench_seed_file(tmp: Path, cases: int) -> Path:
    """The sample registry with every center's weekly capacity raised above the cases this run
    submits (the sample's German centers take 50 a week: a business limit, not the platform's)."""
    import yaml

    from referrals_partners import registry

    sample = Path(registry.__file__).with_name(registry.SAMPLE_REGISTRY_FILE)
    seed = yaml.safe_load(sample.read_text())
    for center in seed["centers"]:
        center["weekly_capacity"] = max(int(center["weekly_capacity"]), 20 * cases)
    path = tmp / "centers.bench.yaml"
    path.write_text(yaml.safe_dump(seed, sort_keys=False, allow_unicode=True))
    return path


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def build_results(
    bench: Bench, floor: dict[str, Any], args: argparse.Namespace, extra: dict[str, Any]
) -> dict[str, Any]:
    fixed, maxed = bench.phase_result("fixed_rate"), bench.phase_result("max_rate")
    staged = bench.phase_result("staged_max_rate")
    lat_f, lat_m = fixed["latency_submit_to_offered"], maxed["latency_submit_to_offered"]
    lat_s = staged["latency_submit_to_offered"]
    floor_f, floor_m = floor["fixed_rate"]["latency"], floor["max_rate"]["latency"]
    busiest = sorted(
        maxed.get("resources", {}).get("processes", {}).items(),
        key=lambda kv: -kv[1]["cores"],
    )
    t0 = bench.windows["fixed_rate"][0]
    cases = []
    for phase in ("fixed_rate", "staged_max_rate", "max_rate"):
        for r in bench.runs[phase]:
            if r.case_id in bench.offered and r.submitted:
                cases.append(
                    [
                        phase,
                        round(r.submitted - t0, 3),
                        round(bench.offered[r.case_id] - r.submitted, 4),
                    ]
                )
    for phase in ("floor_fixed_rate", "floor_max_rate"):
        for r in bench.runs[phase]:
            if r.case_id in bench.floor_seen:
                cases.append(
                    [
                        phase,
                        round(r.submitted - t0, 3),
                        round(bench.floor_seen[r.case_id] - r.submitted, 4),
                    ]
                )
    cores_t, cores = bench.sampler.cores_series(step=2.0)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
        "parameters": {
            "cases_per_phase": args.cases,
            "rate_per_s": args.rate,
            "clients": args.clients,
            "phase1": args.phase1,
            "lead_s": args.lead if args.phase1 == "lead" else None,
            "warmup_cases": args.warmup,
            "document_variants": args.variants,
            "seed": args.seed,
            "destination": "DE",
            "documents_per_case": 3,
        },
        "hops": {
            "count": 4,
            "path": [
                "intake API → outbox → intake relay → case.submitted (referrals.cases.v1) → "
                "translation consumer",
                "translation → outbox → translation relay → document.language_accepted x3 "
                "(referrals.language-checks.v1) → intake consumer",
                "intake → outbox → intake relay → case.ready_for_referral (referrals.cases.v1) "
                "→ partners consumer",
                "partners → outbox → partners relay → referral.offered "
                "(referrals.partner-inbox.<center>.v1) → center (the benchmark's reader)",
            ],
            "floor": "driver → hop0 → hop 1 (x3) → hop1 → hop 2 (1 after the 3rd) → hop2 → "
            "hop 3 → hop3 → reader; raw aiokafka, a consumer group and an idempotent acks=all "
            "producer per hop, offsets committed per batch, no database",
        },
        "chain_of_one_warm_up_case": bench.chain,
        "idle": {
            "resources": bench.sampler.window(*bench.windows["idle"])
            if "idle" in bench.windows
            else {},
            "consumer_handlers": bench.handlers.get("idle", {}),
        },
        "staging_before_phase_1": bench.staging,
        "staging_before_phase_2": bench.staging_staged,
        "pipeline": {"fixed_rate": fixed, "staged_max_rate": staged, "max_rate": maxed},
        "front_end_retries_after_transport_errors": bench.front.retries,
        "floor": floor,
        "ratios": {
            "fixed_rate_p50_vs_floor": ratio(lat_f.get("p50_ms"), floor_f.get("p50_ms")),
            "fixed_rate_p99_vs_floor": ratio(lat_f.get("p99_ms"), floor_f.get("p99_ms")),
            "staged_max_rate_p50_vs_floor_max_rate": ratio(
                lat_s.get("p50_ms"), floor_m.get("p50_ms")
            ),
            "staged_max_rate_p99_vs_floor_max_rate": ratio(
                lat_s.get("p99_ms"), floor_m.get("p99_ms")
            ),
            "max_rate_p50_vs_floor_max_rate": ratio(lat_m.get("p50_ms"), floor_m.get("p50_ms")),
            "max_rate_p99_vs_floor_max_rate": ratio(lat_m.get("p99_ms"), floor_m.get("p99_ms")),
            "sustained_vs_floor_max_rate": round(
                maxed["sustained_offered_per_s"] / floor["max_rate"]["sustained_per_s"], 5
            )
            if floor["max_rate"]["sustained_per_s"]
            else None,
        },
        "targets": {
            "sustained_cases_per_s>=50 (staged cases, submitted at max rate)": staged[
                "sustained_offered_per_s"
            ]
            >= TARGET_CASES_PER_S,
            "sustained_cases_per_s>=50 (whole cases at max rate)": maxed["sustained_offered_per_s"]
            >= TARGET_CASES_PER_S,
            f"p99_s<=2 (fixed rate, {args.rate:g}/s)": bool(lat_f.get("p99_ms"))
            and lat_f["p99_ms"] <= TARGET_P99_S * 1000,
        },
        "notes": [
            "Latencies run from the submit's HTTP answer to the moment a reader process saw "
            "referral.offered; both are wall-clock times on this machine.",
            "CPU is user + system time of each process tree (a process and all its "
            "descendants, every pid ever seen); RSS is summed over the tree, so pages shared "
            "between forked processes (translation's workers share ~900 MB of language models) "
            "count once per process.",
            "other_load_cpu_s is the machine's busy CPU that none of the measured processes "
            "used: other work on the machine, competing for the same cores.",
            "cases_per_s_if_cpu_bound_on_all_cores divides the cores left after idle burn by "
            "the platform's CPU seconds per case above idle: an upper bound that ignores every "
            "other limit.",
        ],
        "busiest_processes_max_rate": [
            {"process": name, **figures} for name, figures in busiest[:6]
        ],
        "series": {
            "t0_wall": t0,
            "windows": {
                k: [round(a - t0, 2), round(b - t0, 2)] for k, (a, b) in bench.windows.items()
            },
            "cases": cases,
            "consumer_lag": lag_columns(bench.lag.samples, t0),
            "consumer_lag_by_topic_peak": {
                g: {
                    topic: max(lag.get(g, {}).get(topic, 0) for _, lag in bench.lag.samples)
                    for topic in {tp for _, lag in bench.lag.samples for tp in lag.get(g, {})}
                }
                for g in bench.lag.groups
            },
            "cores": {
                "t": [round(t - t0, 2) for t in cores_t],
                **{k: [round(v, 3) for v in vs] for k, vs in cores.items()},
            },
        },
    }


def lag_columns(samples: list[tuple[float, dict[str, dict[str, int]]]], t0: float) -> dict:
    """The lag samples as columns: `t`, then one list per `<group> ← <topic>` that ever lagged."""
    pairs = sorted({(g, topic) for _, lag in samples for g in lag for topic in lag[g]})
    columns: dict[str, list[float]] = {"t": [round(t - t0, 2) for t, _ in samples]}
    for group, topic in pairs:
        values = [lag.get(group, {}).get(topic, 0) for _, lag in samples]
        if any(values):
            columns[f"{group} ← {topic}"] = values
    return columns


def write_json(results: dict[str, Any], path: Path) -> None:
    """Indented like the other benchmarks' results, with the long time series on one line."""
    body = json.dumps({k: v for k, v in results.items() if k != "series"}, indent=2)
    series = json.dumps(results["series"], separators=(",", ":"), ensure_ascii=False)
    path.write_text(body[: body.rindex("}")].rstrip() + f',\n  "series": {series}\n}}\n')


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = results["series"]
    fig, (top, middle, bottom) = plt.subplots(
        3, 1, figsize=(15, 11), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2]}
    )
    colours = {
        "staging": "tab:purple",
        "fixed_rate": "tab:blue",
        "staging_2": "tab:pink",
        "staged_max_rate": "tab:green",
        "max_rate": "tab:orange",
        "floor_fixed_rate": "tab:gray",
        "floor_max_rate": "tab:olive",
    }
    labels = {
        "fixed_rate": f"pipeline, {results['parameters']['rate_per_s']:g} cases/s",
        "staged_max_rate": "pipeline, staged cases at max rate",
        "max_rate": "pipeline, whole cases at max rate",
        "floor_fixed_rate": "floor (raw aiokafka), same rate",
        "floor_max_rate": "floor, max rate",
    }
    for phase, colour in colours.items():
        points = [(t, lat) for p, t, lat in series["cases"] if p == phase and phase in labels]
        if points:
            xs, ys = zip(*points, strict=True)
            top.scatter(xs, ys, s=6, color=colour, label=labels[phase], alpha=0.7)
    floor_p99 = results["floor"]["fixed_rate"]["latency"].get("p99_ms")
    if floor_p99:
        top.axhline(floor_p99 / 1000, color="black", ls="--", lw=1, label="floor p99")
    top.axhline(TARGET_P99_S, color="red", ls=":", lw=1, label="target p99 (2 s)")
    top.set_yscale("log")
    top.set_ylabel("submit → referral.offered (s)")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    top.set_title(
        f"Pipeline benchmark: {results['parameters']['cases_per_phase']} cases per phase, "
        f"{results['machine']['cpus']} CPUs, load average "
        f"{results['machine']['loadavg_start'][0]:.1f} → {results['machine']['loadavg_end'][0]:.1f}"
    )
    for ax in (top, middle, bottom):
        for name, (a, b) in series["windows"].items():
            if not name.startswith("floor"):
                ax.axvspan(a, b, color=colours.get(name, "tab:green"), alpha=0.06)
    lag = series["consumer_lag"]
    for name, values in lag.items():
        if name != "t" and max(values, default=0) >= 20:  # the groups and topics that fell behind
            group, topic = name.split(" ← ")
            short = topic.removeprefix("referrals.").removesuffix(".v1")
            middle.plot(lag["t"], values, label=f"{group} ← {short}", lw=1)
    middle.set_ylabel("consumer lag (records)")
    middle.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    cores = series["cores"]
    names = [k for k in cores if k not in ("t", "machine")]
    busiest = sorted(names, key=lambda k: -sum(cores[k]))[:7]
    for name in busiest:
        bottom.plot(cores["t"], cores[name], label=name, lw=1)
    platform_total = [
        sum(cores[k][i] for k in names if not k.startswith("bench-"))
        for i in range(len(cores["t"]))
    ]
    bottom.plot(cores["t"], platform_total, label="platform (services + infrastructure)", lw=1.5)
    bottom.plot(cores["t"], cores["machine"], label="whole machine", color="black", lw=1.2)
    bottom.set_ylabel("CPU (cores)")
    bottom.set_xlabel("seconds since phase 1 began")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def show(results: dict[str, Any]) -> None:
    rate = results["parameters"]["rate_per_s"]
    phases = {
        f"pipeline {rate:g}/s": results["pipeline"]["fixed_rate"],
        "staged, max": results["pipeline"]["staged_max_rate"],
        "whole, max": results["pipeline"]["max_rate"],
    }
    fixed = phases[f"pipeline {rate:g}/s"]
    floor = results["floor"]
    floors = {f"floor {rate:g}/s": floor["fixed_rate"], "floor max": floor["max_rate"]}
    stagings = (("phase 1", "staging_before_phase_1"), ("phase 2", "staging_before_phase_2"))
    for label, key in stagings:
        staging = results.get(key) or {}
        if staging:
            console.print(
                f"staging before {label}: {staging['prepared']} cases opened and filled in "
                f"{staging['open_consent_upload_listed_s']:.0f} s ({staging['uploads_per_s']:.1f} "
                f"uploads/s), all documents read after "
                f"{staging['until_all_documents_read_s']:.0f} s "
                f"({staging['documents_read_per_s']:.2f} documents/s)"
            )
    table = Table(title="submit → referral.offered (4 Kafka hops)")
    table.add_column("")
    for column in (*phases, *floors):
        table.add_column(column, justify="right")

    def ms(d: dict[str, Any], key: str) -> str:
        return f"{d[key]:,.0f} ms" if key in d else "-"

    table.add_row(
        "offered / submitted",
        *(f"{p['offered']}/{p['submitted']}" for p in phases.values()),
        *(f"{f['arrived']}/{f['records']}" for f in floors.values()),
    )
    table.add_row(
        "submit rate /s",
        *(f"{p['submit_rate_per_s']:.1f}" for p in phases.values()),
        *(f"{f['send_rate_per_s']:.1f}" for f in floors.values()),
    )
    table.add_row(
        "sustained offered /s",
        *(f"{p['sustained_offered_per_s']:.1f}" for p in phases.values()),
        *(f"{f['sustained_per_s']:.1f}" for f in floors.values()),
    )
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        table.add_row(
            key.removesuffix("_ms"),
            *(ms(p["latency_submit_to_offered"], key) for p in phases.values()),
            *(ms(f["latency"], key) for f in floors.values()),
        )
    late = fixed.get("submits_late_over_100ms")
    if late is not None:
        table.add_row(
            "submits late > 100 ms",
            f"{late} (max {fixed['submit_lateness_max_s']:.1f} s)",
            *([""] * 4),
        )
    table.add_row(
        "errors / dead ends",
        *(f"{sum(p['errors'].values())} / {sum(p['dead_ends'].values())}" for p in phases.values()),
        "",
        "",
    )
    console.print(table)
    procs = Table(title="CPU seconds (cores used) and peak RSS per process tree; idle: cores")
    procs.add_column("process")
    procs.add_column("idle", justify="right")
    for column in phases:
        procs.add_column(column, justify="right")
    procs.add_column("peak RSS MiB", justify="right")
    used = {label: p.get("resources", {}).get("processes", {}) for label, p in phases.items()}
    pr_m = used["whole, max"]
    pr_i = results["idle"].get("resources", {}).get("processes", {})
    for name in sorted(pr_m, key=lambda k: -pr_m[k]["cpu_s"]):
        figures = [u.get(name, {}) for u in used.values()]
        if not any(f.get("peak_rss_MiB") for f in figures):
            continue  # not running in these phases (the floor's helpers)
        procs.add_row(
            name,
            f"{pr_i.get(name, {}).get('cores', 0):.3f}",
            *(f"{f.get('cpu_s', 0):.1f} ({f.get('cores', 0):.2f})" for f in figures),
            f"{max(f.get('peak_rss_MiB', 0) for f in figures):.0f}",
        )
    for label, res in phases.items():
        r = res.get("resources", {})
        if r:
            procs.caption = (procs.caption or "") + (
                f"{label}: machine busy {r['machine_busy_cores']:.2f} cores, "
                f"other load {r['other_load_cpu_s']:.0f} CPU s over {r['seconds']:.0f} s. "
            )
    console.print(procs)
    ratios = results["ratios"]
    console.print(
        f"pipeline vs floor at {rate:g}/s: p50 x"
        f"{ratios['fixed_rate_p50_vs_floor']}, p99 x{ratios['fixed_rate_p99_vs_floor']}; "
        f"staged at max rate vs floor max: p50 x{ratios['staged_max_rate_p50_vs_floor_max_rate']}"
        f", p99 x{ratios['staged_max_rate_p99_vs_floor_max_rate']}; whole cases at max rate: "
        f"p50 x{ratios['max_rate_p50_vs_floor_max_rate']}, p99 "
        f"x{ratios['max_rate_p99_vs_floor_max_rate']}; sustained "
        f"{ratios['sustained_vs_floor_max_rate']} of the floor's"
    )
    for label, res in phases.items():
        cpu = res.get("cpu_per_case") or {}
        if cpu:
            top = ", ".join(
                f"{k} {v:.3f}" for k, v in list(cpu["by_process_above_idle"].items())[:4]
            )
            console.print(
                f"{label}: platform CPU per case {cpu['platform_cpu_s_per_case_above_idle']:.2f} s "
                f"above idle ({top}); CPU-bound on all {results['machine']['cpus']} cores: "
                f"{cpu['cases_per_s_if_cpu_bound_on_all_cores']} cases/s"
            )
    for target, met in results["targets"].items():
        console.print(f"target {target}: " + ("[green]met[/]" if met else "[red]not met[/]"))
    console.print(
        f"load average {results['machine']['loadavg_start']} at start, "
        f"{results['machine']['loadavg_end']} at end"
    )


# -------------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, docs: DocumentSet, extra: dict[str, Any]) -> dict[str, Any]:
    from devstack import platform as platform_mod
    from devstack import stack as stack_mod
    from devstack.platform import PlatformInfo
    from devstack.stack import StackInfo, resolve_root

    tmp: Path | None = None
    if args.attach:
        root = resolve_root(args.root)
        stack, plat = StackInfo.load(root), PlatformInfo.load(root)
        if stack is None or plat is None or not all(plat.alive().values()):
            raise SystemExit(f"no running platform in {root} (make up)")
        console.print(
            f"[yellow]attached to {root}[/]: the sample centers' weekly capacity applies (the "
            "German ones take 50 cases a week); cases past it end unroutable and are counted so"
        )
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        os.environ["REFERRALS_PARTNERS_SEED_FILE"] = str(bench_seed_file(tmp, args.cases))
        # One front end's key opens every case at full speed: no per-client rate limit here.
        os.environ["REFERRALS_RATE_LIMIT__ENABLED"] = "false"
        stack = await asyncio.to_thread(stack_mod.start, tmp / "stack", Console(stderr=True))
        try:
            plat = await asyncio.to_thread(
                platform_mod.start, stack, Console(stderr=True), trace_viewer=False
            )
        except BaseException:
            await asyncio.to_thread(stack_mod.stop, stack)
            raise
    extra["platform"] = {
        "own_stack": not args.attach,
        "trace_viewer": plat.trace_viewer or None,
        "processes": sorted(plat.pids),
    }
    bench = Bench(stack, plat, args, docs)
    try:
        await bench.start()
        await bench.warm_up()
        await bench.lag.start()
        await bench.idle(args.idle)
        await bench.fixed_rate(args.cases, args.rate)
        await bench.quiet()
        await bench.staged_max_rate(args.cases)
        await bench.quiet()
        await bench.max_rate(args.cases)
        await bench.quiet()
        console.print(f"[bold]floor[/]: {args.cases} records at {args.rate:g}/s, then flat out")
        floor = await bench.floor(args.cases, args.rate)
    finally:
        await bench.stop()
        if tmp is not None:
            await asyncio.to_thread(platform_mod.stop, plat)
            await asyncio.to_thread(stack_mod.stop, stack)
            if args.keep:
                console.print(f"kept {tmp} (services' logs in {tmp / 'stack' / 'services'})")
            else:
                await asyncio.to_thread(stack_mod.purge, tmp)
    extra["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return build_results(bench, floor, args, extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="cases per phase")
    parser.add_argument("--rate", type=float, default=10.0, help="phase 1 arrivals per second")
    parser.add_argument("--clients", type=int, default=32, help="concurrent front ends")
    parser.add_argument(
        "--phase1",
        choices=["ahead", "lead"],
        default="ahead",
        help="phase 1's cases: staged before the phase (ahead), or opened --lead s before "
        "their submit (lead)",
    )
    parser.add_argument("--lead", type=float, default=8.0, help="with --phase1 lead")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--idle", type=float, default=15.0, help="idle seconds measured first")
    parser.add_argument("--variants", type=int, default=16, help="distinct texts per kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--lag-interval", type=float, default=1.0)
    parser.add_argument("--attach", action="store_true", help="measure the `make up` platform")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs)")
    parser.add_argument("--root", help="the running platform's directory (with --attach)")
    parser.add_argument("--role", choices=["watch", "floor-hops"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topics", help=argparse.SUPPRESS)
    parser.add_argument("--types", default="", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "watch":
        wanted = set(filter(None, args.types.split(",")))
        asyncio.run(watch(args.bootstrap, args.topics.split(","), wanted))
        return
    if args.role == "floor-hops":
        asyncio.run(floor_hops(args.bootstrap, args.topics.split(","), args.group))
        return
    extra: dict[str, Any] = {
        "machine": {**machine_info(), "loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    }
    console.print(f"load average at start: {extra['machine']['loadavg_start']}")
    console.print(f"making {args.variants} variants of each of {len(DOC_KINDS)} document kinds…")
    docs = DocumentSet.generate(args.variants, args.seed)
    extra["documents"] = docs.sizes()
    results = asyncio.run(run(args, docs, extra))
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(results, RESULTS / "pipeline.json")
    plot(results, RESULTS / "pipeline.png")
    show(results)
    console.print("written to bench/results/pipeline.json and bench/results/pipeline.png")


if __name__ == "__main__":
    main()
