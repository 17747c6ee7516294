"""`python -m bot`: run the bot."""

from bot.launcher import main

raise SystemExit(main())
