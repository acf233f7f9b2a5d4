"""The Data tab's check names the records it counts and Split keeps repeated ones out of the test part, which
Evaluate then pre-selects; invalid JSON keeps the tables' headers; the language switch re-words what is shown;
Export points at its Overwrite box. Uses test_browser.py's helpers and conftest's server."""

from __future__ import annotations

import json

import pytest
from test_browser import expect, field, fill, go, pick, shot

pytestmark = pytest.mark.browser
RECORDS = [
    {"instruction": "What is 2+2?", "output": "4"},
    {"instruction": "Name a color", "output": "red"},
    {"instruction": "What is 2+2?", "output": "4"},
    {"instruction": "Say nothing", "output": ""},
] + [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(8)]


def test_check_split_and_evaluate_pick_name_the_records(page, workspace, shots):
    (workspace / "data" / "dupes.json").write_text(json.dumps(RECORDS), encoding="utf-8")
    (workspace / "data" / "broken.json").write_text('[{"instruction": "a", "output": "b"},\n{"a" "b"}]')
    fill(page, "data-path", "data/dupes.json")
    page.locator("#data-check").click()
    msg, named = page.locator("#data-msg"), page.locator("#check-problems")
    expect(msg).to_contain_text("1 duplicates and 1 empty replies")
    expect(msg).not_to_contain_text("no problems")
    expect(named).to_contain_text("record 2: duplicate of record 0 (“What is 2+2?”)")
    expect(named).to_contain_text("record 3: empty reply (“Say nothing”)")

    fill(page, "data-path", "data/dupes.json")
    page.locator("#data-split").click()
    expect(msg).to_contain_text("2 records occur more than once (records 0, 2)")
    test_part = json.loads((workspace / "data" / "dupes_test.json").read_text(encoding="utf-8"))
    assert test_part and all(r["instruction"] != "What is 2+2?" for r in test_part)
    go(page, "Evaluate")
    expect(page.locator("#eval-datasets")).to_contain_text("dupes_test")
    expect(page.locator("#eval-datasets")).not_to_contain_text("triage_test")

    go(page, "Data")
    fill(page, "data-path", "data/broken.json")
    page.locator("#data-check").click()
    expect(msg).to_contain_text("not valid JSON at line 2, column 6")
    expect(page.locator("#check-summary th").first).to_contain_text("item")
    expect(named.locator("th").first).to_contain_text("problem")
    pick(page, "lang", "中文")
    expect(msg).to_contain_text("第 2 行第 6 列不是有效的 JSON")
    expect(page.locator("#check-summary th").first).to_contain_text("项目")
    shot(page, shots, "data-check-zh")
    pick(page, "lang", "English")
    expect(msg).to_contain_text("not valid JSON")


def test_export_over_an_existing_directory_points_at_the_overwrite_box(page, workspace):
    old = workspace / "exports" / "earlier"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    go(page, "Export")
    fill(page, "export-dir", "exports/earlier")
    expect(field(page, "export-dir")).to_have_value("exports/earlier")
    page.locator("#export-start").click()
    expect(page.locator("#export-msg")).to_contain_text("already holds files: tick “Overwrite” to replace it")
    expect(page.locator("#export-msg")).not_to_contain_text("overwrite_export_dir")
