"""Memory in the users' own languages, and versions of updated entries.

Each entry gets its language (`lang`) and the dictionary forms of its words where Postgres
has no stemmer for it (`lemmas`); the generated `search` column is rebuilt to index each
language with its own configuration. Existing entries are detected here, in batches; on a
large table this migration rewrites it once (the column is dropped and added again, as a
generated column's expression cannot be altered in place).
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import migrations, models
from django.db.models import Case, When
from django.db.models.expressions import CombinedExpression

BATCH = 2000

# Frozen here (not imported from models.py): a later change of the list needs its own
# migration, which makemigrations only sees if this one keeps the list it was written with.
FTS_CONFIGS = {
    "en": "english",
    "ru": "russian",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "da": "danish",
    "fi": "finnish",
    "hu": "hungarian",
    "nb": "norwegian",
    "ro": "romanian",
    "tr": "turkish",
    "el": "greek",
    "lt": "lithuanian",
    "id": "indonesian",
    "ga": "irish",
    "ca": "catalan",
    "eu": "basque",
    "hy": "armenian",
    "hi": "hindi",
    "ne": "nepali",
    "sr": "serbian",
    "ta": "tamil",
    "ar": "arabic",
    "yi": "yiddish",
}


def search_expression():
    by_lang = Case(
        *[When(lang=code, then=SearchVector("text", config=config)) for code, config in FTS_CONFIGS.items()],
        When(lang="", then=SearchVector("text", config="english")),
        default=SearchVector("text", config="simple"),
        output_field=SearchVectorField(),
    )
    return CombinedExpression(by_lang, "||", SearchVector("lemmas", config="simple"), output_field=SearchVectorField())


def detect_languages(apps, schema_editor):
    from apps.memory import language

    MemoryEntry = apps.get_model("memory", "MemoryEntry")
    last = ""
    while True:
        rows = list(MemoryEntry.objects.filter(id__gt=last).order_by("id").only("id", "text")[:BATCH])
        if not rows:
            return
        for row in rows:
            row.lang = language.detect(row.text)
            row.lemmas = language.lemmas(row.text, row.lang)
        MemoryEntry.objects.bulk_update(rows, ["lang", "lemmas"])
        last = rows[-1].id


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0003_turn_order_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="memoryentry",
            name="lang",
            field=models.CharField(
                blank=True, default="", help_text="ISO 639-1 code, detected or given; empty when unknown", max_length=8
            ),
        ),
        migrations.AddField(
            model_name="memoryentry",
            name="lemmas",
            field=models.TextField(
                blank=True, default="", help_text="dictionary forms of words whose language Postgres cannot stem"
            ),
        ),
        migrations.AddField(
            model_name="memoryentry",
            name="version",
            field=models.PositiveIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="memoryentry",
            name="updated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="MemoryEntryVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("entry_id", models.CharField(max_length=40)),
                ("agent_id", models.CharField(max_length=128)),
                ("version", models.PositiveIntegerField()),
                ("content", models.JSONField()),
                ("text", models.TextField()),
                ("meta", models.JSONField(blank=True, default=dict)),
                ("lang", models.CharField(blank=True, default="", max_length=8)),
                ("valid_from", models.DateTimeField(help_text="when this version was stored")),
                ("replaced_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["entry_id", "version"],
                "constraints": [models.UniqueConstraint(fields=("entry_id", "version"), name="memory_version_unique")],
            },
        ),
        migrations.RemoveIndex(model_name="memoryentry", name="memory_entry_fts"),
        migrations.RemoveField(model_name="memoryentry", name="search"),
        migrations.RunPython(detect_languages, migrations.RunPython.noop),
        migrations.AddField(
            model_name="memoryentry",
            name="search",
            field=models.GeneratedField(
                db_persist=True,
                expression=search_expression(),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        migrations.AddIndex(
            model_name="memoryentry",
            index=django.contrib.postgres.indexes.GinIndex(fields=["search"], name="memory_entry_fts"),
        ),
    ]
