from django.db import migrations, models


class Migration(migrations.Migration):
    """Indexes for the pages that read one team's or a few people's days from the daily rollups (so
    they never read a whole period of every user's rows), and every team's cost per day."""

    dependencies = [
        ("billing", "0008_teams_budgets_alerts"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="usagedaily",
            index=models.Index(fields=["team_id", "day"], name="usagedaily_team_day"),
        ),
        migrations.AddIndex(
            model_name="usagedailyuser",
            index=models.Index(fields=["user_id", "day"], name="usagedailyuser_user_day"),
        ),
        migrations.AddIndex(
            model_name="usagedailyuser",
            index=models.Index(
                fields=["day", "team_id", "user_id", "cost", "calls"], name="usagedailyuser_day_cost_calls"
            ),
        ),
    ]
