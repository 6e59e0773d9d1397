"""Make the demo's sample documents (run once; the PDFs are committed beside this script).

    uv run python deploy/local/src/devstack/samples/make_samples.py

One invented patient (every name, date and number here is made up) from Kyiv with breast cancer
who asks for a second opinion in Germany: her Ukrainian discharge summary ("виписка"), the
English pathology report of her biopsy, the German translation of the discharge summary that the
platform will ask for, and the written opinion a cancer center returns. Text PDFs with fpdf2 and
the DejaVu font matplotlib ships (Cyrillic).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from fpdf import FPDF

HERE = Path(__file__).parent
FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"

DISCHARGE_UK = (
    "ВИПИСКА ІЗ МЕДИЧНОЇ КАРТИ СТАЦІОНАРНОГО ХВОРОГО № 7302",
    [
        "КНП «Київський міський клінічний онкологічний центр», відділення пухлин грудної "
        "залози. Усі імена та номери в цьому документі вигадані.",
        "Пацієнтка: Олена Петренко (вигадана особа), 1979 року народження, м. Київ. Перебувала "
        "на стаціонарному лікуванні з 06.10.2026 по 13.10.2026.",
        "Діагноз: рак лівої молочної залози cT2N1M0, стадія IIB. Інвазивна протокова "
        "карцинома, ступінь злоякісності G2. Рецептори естрогену 8 балів, прогестерону 6 балів, "
        "HER2 1+, Ki-67 25 %.",
        "Обстеження: мамографія та ультразвукове дослідження — пухлина верхньо-зовнішнього "
        "квадранта лівої молочної залози розміром 3,1 см, збільшений лімфатичний вузол у лівій "
        "пахвовій ділянці. Комп'ютерна томографія органів грудної клітки та черевної порожнини: "
        "ознак віддалених метастазів не виявлено. Остеосцинтиграфія без патологічних змін.",
        "Проведено: трепан-біопсію пухлини та пахвового лімфатичного вузла під контролем "
        "ультразвуку. Гістологічне дослідження підтвердило діагноз; метастаз у лімфатичному "
        "вузлі.",
        "Рекомендації консиліуму: неоад'ювантна хіміотерапія за схемою з антрациклінами та "
        "таксанами з подальшим оперативним лікуванням. Пацієнтка бажає отримати друге "
        "медичне висновок щодо можливості органозберігаючої операції після хіміотерапії.",
        "Лікуючий лікар: Шевчук І. В.   Завідувач відділення: Бондаренко О. М.",
    ],
)

DISCHARGE_DE = (
    "ENTLASSUNGSBERICHT (ÜBERSETZUNG AUS DEM UKRAINISCHEN) NR. 7302",
    [
        "Städtisches klinisches onkologisches Zentrum Kyjiw, Abteilung für Brusttumoren. Alle "
        "Namen und Nummern in diesem Dokument sind erfunden.",
        "Patientin: Olena Petrenko (fiktive Person), geboren 1979, Kyjiw. Stationäre Behandlung "
        "vom 06.10.2026 bis 13.10.2026.",
        "Diagnose: Karzinom der linken Brust cT2N1M0, Stadium IIB. Invasives duktales Karzinom, "
        "Malignitätsgrad G2. Östrogenrezeptor 8 Punkte, Progesteronrezeptor 6 Punkte, HER2 1+, "
        "Ki-67 25 %.",
        "Untersuchungen: Mammographie und Ultraschall zeigen einen Tumor von 3,1 cm im oberen "
        "äußeren Quadranten der linken Brust sowie einen vergrößerten Lymphknoten in der linken "
        "Achselhöhle. Die Computertomographie von Thorax und Abdomen ergab keine Hinweise auf "
        "Fernmetastasen. Die Skelettszintigraphie war unauffällig.",
        "Durchgeführt: ultraschallgesteuerte Stanzbiopsie des Tumors und des axillären "
        "Lymphknotens. Die histologische Untersuchung bestätigte die Diagnose mit einer "
        "Lymphknotenmetastase.",
        "Empfehlung der Tumorkonferenz: neoadjuvante Chemotherapie mit Anthrazyklinen und "
        "Taxanen, anschließend Operation. Die Patientin wünscht eine ärztliche Zweitmeinung "
        "zur Möglichkeit einer brusterhaltenden Operation nach der Chemotherapie.",
        "Beglaubigte Übersetzung, angefertigt von einem vereidigten Übersetzer in Kyjiw.",
    ],
)

PATHOLOGY_EN = (
    "HISTOPATHOLOGY REPORT",
    [
        "Kyiv City Clinical Oncology Centre, Department of Pathology. All names and numbers in "
        "this document are invented.",
        "Patient: Olena Petrenko (fictitious), born 1979. Specimens: (A) core needle biopsy, "
        "left breast, upper outer quadrant; (B) core needle biopsy, left axillary lymph node.",
        "Macroscopic description: (A) four cores of white tissue, 12 to 16 mm long; (B) two "
        "cores of grey tissue, 10 and 11 mm long.",
        "Microscopic description: (A) invasive carcinoma of no special type (ductal), "
        "Nottingham grade 2 (tubules 3, pleomorphism 2, mitoses 1). No lymphovascular invasion "
        "is seen in the cores. (B) lymph node tissue largely replaced by metastatic carcinoma "
        "of similar morphology.",
        "Immunohistochemistry: oestrogen receptor positive (Allred score 8), progesterone "
        "receptor positive (Allred score 6), HER2 score 1+ (negative), Ki-67 25 percent.",
        "Diagnosis: invasive breast carcinoma of no special type, grade 2, hormone receptor "
        "positive, HER2 negative, with metastasis in the axillary lymph node.",
        "Reported by the consultant histopathologist; the diagnosis was reviewed by a second "
        "pathologist.",
    ],
)

HER2_REVIEW_EN = (
    "IMMUNOHISTOCHEMISTRY RE-REVIEW REPORT (HER2)",
    [
        "Kyiv City Clinical Oncology Centre, Department of Pathology. All names and numbers in "
        "this document are invented.",
        "Patient: Olena Petrenko (fictitious), born 1979. Requested by the tumour board of the "
        "cancer center giving the second opinion: HER2 re-testing on the original block.",
        "Material: paraffin block A2 of the core needle biopsy of the left breast, upper outer "
        "quadrant. New sections were cut and stained.",
        "HER2 immunohistochemistry (clone 4B5): weak incomplete membrane staining in about 15 "
        "percent of invasive tumour cells, score 1+ (HER2-low). In situ hybridisation was not "
        "performed.",
        "Conclusion: HER2 score 1+, HER2-low. The stained slides and block A2 are sent to the "
        "cancer center by courier for its own review.",
        "Reported by the consultant histopathologist.",
    ],
)

OPINION_EN = (
    "SECOND OPINION: MULTIDISCIPLINARY TUMOUR BOARD",
    [
        "Sample cancer center of the local demo. This opinion is sample data and gives no "
        "medical advice.",
        "Patient: Olena Petrenko (fictitious). Question: is breast-conserving surgery possible "
        "after neoadjuvant chemotherapy?",
        "Documents reviewed: discharge summary (German translation), histopathology report, "
        "staging summary. The diagnosis of a hormone receptor positive, HER2 negative invasive "
        "carcinoma, cT2N1M0, stage IIB, is confirmed.",
        "Opinion: we agree with neoadjuvant chemotherapy. Breast-conserving surgery is possible "
        "if the tumour responds; we recommend marking the tumour with a clip before "
        "chemotherapy, and imaging after the fourth cycle. Endocrine therapy should follow.",
        "The board is available for questions from the treating team.",
    ],
)


def pdf(path: Path, document: tuple[str, list[str]]) -> None:
    out = FPDF(format="A4")
    out.set_creator("referrals demo samples")
    out.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
    out.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    out.set_margins(20, 20, 20)
    out.add_page()
    title, paragraphs = document
    out.set_font("DejaVu", "B", 13)
    out.multi_cell(0, 7, title)
    out.ln(3)
    out.set_font("DejaVu", "", 11)
    for paragraph in paragraphs:
        out.multi_cell(0, 6, paragraph)
        out.ln(2)
    out.output(str(path))


def main() -> None:
    pdf(HERE / "discharge_summary_uk.pdf", DISCHARGE_UK)
    pdf(HERE / "pathology_report_en.pdf", PATHOLOGY_EN)
    pdf(HERE / "her2_review_en.pdf", HER2_REVIEW_EN)
    pdf(HERE / "discharge_summary_de.pdf", DISCHARGE_DE)
    pdf(HERE / "opinion_en.pdf", OPINION_EN)


if __name__ == "__main__":
    main()
