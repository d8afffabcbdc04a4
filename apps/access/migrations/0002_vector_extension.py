# pgvector in its own migration, before any app that stores vectors.
from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    dependencies = [("daarion", "0001_initial")]

    operations = [VectorExtension()]
