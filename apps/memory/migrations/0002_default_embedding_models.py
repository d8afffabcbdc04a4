# The built-in embedding models and the HNSW index of the default one.
from django.db import migrations

HASH_DIMS = 256
LOCAL_DIMS = 384


def seed_models(apps, schema_editor):
    from apps.memory.vector_index import create_index_sql

    EmbeddingModel = apps.get_model("memory", "EmbeddingModel")
    EmbeddingModel.objects.get_or_create(name="hash", defaults={"backend": "hash", "dimensions": HASH_DIMS, "is_active": True})
    EmbeddingModel.objects.get_or_create(
        name="local", defaults={"backend": "local", "dimensions": LOCAL_DIMS, "is_active": False}
    )
    for name, dims in (("hash", HASH_DIMS), ("local", LOCAL_DIMS)):
        sql, params = create_index_sql(name, dims)
        schema_editor.execute(sql.replace("%s", "'" + name + "'"))


class Migration(migrations.Migration):
    dependencies = [("memory", "0001_initial")]

    operations = [migrations.RunPython(seed_models, migrations.RunPython.noop)]
