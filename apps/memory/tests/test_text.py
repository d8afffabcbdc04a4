"""The searchable text derived from stored content."""

from apps.memory.text import derive_text


def test_conversation_becomes_both_sides_labelled():
    text = derive_text("conversation", {"user_message": "What changed?", "agent_reply": "The budget passed."})
    assert text == "User: What changed?\nAgent: The budget passed."


def test_text_key_is_the_text_with_other_keys_after_it():
    assert derive_text("kb", {"text": "Roadmap Q3", "source": "docs"}) == "Roadmap Q3\nsource: docs"


def test_speaker_prefixes_the_text():
    assert derive_text("conversation", {"speaker": "Caroline", "text": "I went hiking."}) == "Caroline: I went hiking."


def test_any_other_content_is_its_keys_and_values():
    text = derive_text("dao-event", {"event": "vote", "proposal": 12, "tags": ["a", "b"]})
    assert text.splitlines() == ["event: vote", "proposal: 12", 'tags: ["a", "b"]']


def test_empty_values_give_empty_text():
    assert derive_text("kb", {"text": "  ", "note": None}) == ""
