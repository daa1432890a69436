-- Room on each page of `notification_log` for the new version of a row: a message's row is
-- written three times (claimed, attempted, ended), and the attempt changes no indexed column,
-- so with room on its page it is a HOT update that adds no entry to the table's six indexes.
-- At the default fillfactor of 100 a page is full when its rows are claimed, and every attempt
-- went to another page with an entry in each index. Applies to pages written from now on.
ALTER TABLE notification_log SET (fillfactor = 70);
