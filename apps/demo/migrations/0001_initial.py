"""The demo's Followup, taken over from toolcore (tools 0004_move_followup_to_demo) with its
table tools_followup: on a fresh database tools 0001 created the table, on an existing one it
holds the rows; either way only Django's state changes here. The content type moves too, so
permissions granted on follow-ups and the admin's history keep pointing at the model."""

import django.utils.timezone
from django.db import migrations, models


def _move_content_type(apps, schema_editor, *, source: str, target: str) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    rows = content_type.objects.using(schema_editor.connection.alias)
    if not rows.filter(app_label=target, model="followup").exists():
        rows.filter(app_label=source, model="followup").update(app_label=target)


def content_type_to_demo(apps, schema_editor) -> None:
    _move_content_type(apps, schema_editor, source="tools", target="demo")


def content_type_to_tools(apps, schema_editor) -> None:
    _move_content_type(apps, schema_editor, source="demo", target="tools")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("tools", "0004_move_followup_to_demo"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Followup",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("agent_id", models.CharField(max_length=200)),
                        ("microdao_id", models.CharField(max_length=200)),
                        ("title", models.CharField(max_length=300)),
                        ("assignee", models.CharField(blank=True, default="", max_length=200)),
                        ("due_date", models.DateField(blank=True, null=True)),
                        ("request_id", models.CharField(blank=True, default="", max_length=128)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                    ],
                    options={
                        "db_table": "tools_followup",
                        "ordering": ["-created_at"],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to_demo, content_type_to_tools),
    ]
