"""The full-text index of message text: FTS5 + triggers on SQLite, a generated tsvector + GIN on PostgreSQL.

The SQL lives in conversations/search.py (idempotent), which also runs it after every `migrate`, since
SQLite loses a table's triggers when Django rebuilds that table for a later schema change.
"""

from django.db import migrations


def install(apps, schema_editor):
    from conversations.search import index_install

    index_install(schema_editor.connection)


def uninstall(apps, schema_editor):
    from conversations.search import index_uninstall

    index_uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0007_organise_presets_share_links"),
    ]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
