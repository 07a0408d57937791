-- A container run's follow-up (issue 22): the ref its clone checks out, the branch it pushed,
-- and the container's Claude state (sealed), which the next turn's container gets.
ALTER TABLE runs ADD COLUMN checkout TEXT;
ALTER TABLE runs ADD COLUMN pushed_branch TEXT;
ALTER TABLE runs ADD COLUMN home BYTEA;
