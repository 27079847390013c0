"""The notices' names are one vocabulary: each names a template pair the worker ships, and the worker mails no
template without a code that is not one of them."""

from pathlib import Path

from common.messaging.messages import Purpose
from common.notices import Notice
from email_service.handlers import EVENT_NOTICES, NOTICE_TEMPLATES, RESTORE_NOTICES, SECURITY_NOTICES

TEMPLATES = Path(__file__).parents[2] / "email_service" / "templates"


def test_every_notice_has_its_text_and_html_template():
    for notice in Notice:
        assert (TEMPLATES / f"{notice}.txt").is_file() and (TEMPLATES / f"{notice}.html").is_file(), notice


def test_every_template_is_a_purposes_code_or_a_notice():
    shipped = {path.stem for path in TEMPLATES.glob("*.txt") if not path.stem.startswith("_")}
    assert shipped == {purpose.value for purpose in Purpose} | {notice.value for notice in Notice}


def test_the_worker_mails_notices_by_their_names():
    mailed = NOTICE_TEMPLATES | RESTORE_NOTICES | SECURITY_NOTICES | {notice for notice, _ in EVENT_NOTICES.values()}
    assert mailed == set(Notice)
