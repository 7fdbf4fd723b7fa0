"""The ``merchants`` group: members may use the merchant area."""

from django.db import migrations

MERCHANTS_GROUP = "merchants"
PERMISSIONS = ("add_garment", "change_garment", "delete_garment", "view_garment")


def create_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ContentType = apps.get_model("contenttypes", "ContentType")
    group, _ = Group.objects.get_or_create(name=MERCHANTS_GROUP)
    garment_type, _ = ContentType.objects.get_or_create(app_label="catalog", model="garment")
    for codename in PERMISSIONS:
        permission, _ = Permission.objects.get_or_create(
            content_type=garment_type,
            codename=codename,
            defaults={"name": f"Can {codename.split('_')[0]} garment"},
        )
        group.permissions.add(permission)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=MERCHANTS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
