"""The bot's durable state: users, jobs, images, rate limits, models and the audit log."""
