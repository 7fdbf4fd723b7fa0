from django.db import migrations, models
from django.db.models import F, Q


def photos_uploaded_when_their_job_was_made(apps, schema_editor):
    """Before this field, a job's photo was as old as the job (a re-run's copy excepted, whose
    original time is lost): retention goes on counting from there."""
    TryOnJob = apps.get_model("tryon", "TryOnJob")
    TryOnJob.objects.filter(~Q(person_photo=""), photo_uploaded_at__isnull=True).update(
        photo_uploaded_at=F("created_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tryon", "0004_inpaint_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="tryonjob",
            name="photo_uploaded_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.RunPython(photos_uploaded_when_their_job_was_made, migrations.RunPython.noop),
    ]
