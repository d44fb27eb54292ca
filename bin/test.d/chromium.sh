# Sourced by bin/test: Debian's headless chromium for the admin browser test
# (tests/realtime/test_admin_browser.py drives it over the DevTools protocol, no selenium).
need_apt chromium chromium
