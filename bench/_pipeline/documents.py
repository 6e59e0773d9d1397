"""The pipeline benchmark's documents: three kinds of multi-page text-layer PDFs of 100 KB - 1 MB
(an English pathology report, a German discharge summary, an English imaging report or a German
lab report), all acceptable for Germany.

Every name, number and finding below is invented. Each document kind has `--variants` distinct
texts (generated before the phases, in worker processes); every upload then gets its own
reference in the PDF's /Subject (same length, so the cross-reference table stays valid), so no two
uploads have the same bytes."""

from __future__ import annotations

import hashlib
import io
import os
import random
import statistics
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
