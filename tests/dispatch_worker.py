"""A dispatcher process for the crash test: python dispatch_worker.py SHOP_FILE SOLAPI_URL (killed at random)."""

from __future__ import annotations

import sys
from datetime import timedelta

from shopcrm import Shop
from shopcrm.channels import SolapiChannel
from solapi_server import KEY, PF_ID, SECRET

if __name__ == "__main__":
    path, url = sys.argv[1], sys.argv[2]
    with Shop.open(path) as shop:
        solapi = SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=url)
        solapi.batch_size = 10  # type: ignore[misc]
        report = shop.dispatch({"sms": solapi}, drain=True, batch=40, concurrency=2, lease=timedelta(seconds=1))
        print(report, flush=True)
