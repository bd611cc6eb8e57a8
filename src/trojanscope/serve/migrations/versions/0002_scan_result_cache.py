"""the scan result cache (cluster.result_cache), shared with `scan --cache URL`

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 22:10:00

A `scan --cache` on this database before the upgrade made the tables already: they are left
as they are.
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if 'scan_results' not in have:
        op.create_table('scan_results',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('scanner', sa.String(length=64), nullable=False),
        sa.Column('result', sa.JSON(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('sha256', 'scanner')
        )
    if 'file_digests' not in have:
        op.create_table('file_digests',
        sa.Column('path_key', sa.String(length=64), nullable=False),
        sa.Column('stamp', sa.String(length=100), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('path_key')
        )


def downgrade() -> None:
    op.drop_table('file_digests')
    op.drop_table('scan_results')
