"""The public API is small, sorted and exactly what shopcrm.__init__ exports."""

import shopcrm


def test_all_is_sorted_and_complete() -> None:
    assert shopcrm.__all__ == sorted(shopcrm.__all__)
    public = {name for name in dir(shopcrm) if not name.startswith("_")}
    modules = {"compiler", "dsl", "errors", "explain", "reference", "schema", "shop", "sources", "timeline", "plugins", "demo", "cli", "lifecycle", "profile", "campaigns", "recipients", "ticking", "channels", "dispatching", "testing", "checks", "labels", "notebook", "mapping", "measurement", "tracking", "web", "report", "report_html", "report_sql", "program_lift", "products", "recommend", "segment_tracking", "consents"}
    assert public - modules == set(shopcrm.__all__)
