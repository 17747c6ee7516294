"""Course mode: the lesson buttons under each result, each asking for one comparison job.

What a comparison is (its panels, their values) lives in ``bot.jobs.lessons``, and how its
grid is posted in ``bot.jobs.comparison_results``: a job's life never reaches into features.
"""

from bot.features.course._requests import comparison_job, request_comparison

__all__ = ["comparison_job", "request_comparison"]
