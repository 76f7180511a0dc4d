"""One scenario per business flow, all four services running (DESIGN.md, issue 7)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.flows import app_complaint_flow, browsing_flow, complaint_flow, tier_flow
from tests.e2e.support import System

pytestmark = pytest.mark.e2e


async def test_balance_postings_change_tiers_and_tell_customer_and_teams(system: System):
    # One customer who prefers WeChat, one who prefers SMS, side by side.
    await asyncio.gather(tier_flow(system, "wechat"), tier_flow(system, "sms"))


async def test_card_fraud_complaint_from_filing_to_the_last_callback(system: System):
    await complaint_flow(system)


async def test_an_app_complaints_callback_reaches_the_customer_service_desk(system: System):
    await app_complaint_flow(system)


async def test_three_days_of_wealth_views_reach_the_relationship_manager(system: System):
    await browsing_flow(system)
