"""Followup moved to the demo app (apps/demo/models.py). Only Django's state changes: the
table tools_followup and its rows stay, and apps/demo's 0001_initial takes the model over
(it depends on this migration)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tools", "0003_mcp_servers"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Followup")],
            database_operations=[],
        ),
    ]
