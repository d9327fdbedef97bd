      *----------------------------------------------------------------
      * COPYBOOK:  LNHIST
      * TITLE:     PAYMENT HISTORY RECORD  (DD LOANHIST, 120 BYTES, FB)
      *
      * WRITTEN BY LONPF2: ONE DETAIL RECORD ('D') FOR EVERY PAYMENT
      * ACCEPTED, THEN ONE TRAILER RECORD ('T') WITH THE DAY'S TOTALS.
      * EACH NIGHT CREATES A NEW GENERATION OF LNSV.PROD.LOANHIST.DAILY.
      * READ BY LONRC1 (END-OF-DAY RECONCILIATION) AND, AFTER A MONTHLY
      * SORT THAT DROPS THE TRAILERS, BY LONST1 (BORROWER STATEMENTS).
      *
      * HOW A DETAIL RECORD BALANCES:
      *   LH-TOTAL-AMOUNT = LH-INTEREST-APPLIED + LH-PRINCIPAL-APPLIED
      *                   + LH-ESCROW-APPLIED   + LH-LATE-FEE-APPLIED
      *                   + LH-EXCESS-TO-PRIN   + LH-SUSPENSE-CHANGE
      * LH-SUSPENSE-CHANGE IS POSITIVE WHEN A PARTIAL PAYMENT IS PUT
      * INTO UNAPPLIED FUNDS AND NEGATIVE WHEN EARLIER UNAPPLIED FUNDS
      * ARE RELEASED TO COMPLETE AN INSTALLMENT.
      * LH-EXCESS-TO-PRIN IS ADDITIONAL PRINCIPAL (CURTAILMENT) PAID
      * BEYOND THE SCHEDULED INSTALLMENT.
      * LH-DUE-DATE-PAID IS ZERO WHEN NO INSTALLMENT WAS SATISFIED.
      *----------------------------------------------------------------
       01  PAYMENT-HISTORY-RECORD.
           05  LH-RECORD-TYPE              PIC X(01).
               88  LH-DETAIL                   VALUE 'D'.
               88  LH-TRAILER                  VALUE 'T'.
           05  LH-DETAIL-DATA.
               10  LH-LOAN-NUMBER          PIC X(10).
               10  LH-POSTING-DATE         PIC 9(08).
               10  LH-EFFECTIVE-DATE       PIC 9(08).
               10  LH-TRAN-CODE            PIC X(03).
                   88  LH-TRAN-REGULAR-PMT     VALUE 'PMT'.
                   88  LH-TRAN-PRIN-ONLY       VALUE 'PRN'.
                   88  LH-TRAN-ESCROW-ONLY     VALUE 'ESC'.
               10  LH-TOTAL-AMOUNT         PIC S9(7)V99  COMP-3.
               10  LH-INTEREST-APPLIED     PIC S9(7)V99  COMP-3.
               10  LH-PRINCIPAL-APPLIED    PIC S9(7)V99  COMP-3.
               10  LH-ESCROW-APPLIED       PIC S9(7)V99  COMP-3.
               10  LH-LATE-FEE-APPLIED     PIC S9(7)V99  COMP-3.
               10  LH-EXCESS-TO-PRIN       PIC S9(7)V99  COMP-3.
               10  LH-SUSPENSE-CHANGE      PIC S9(7)V99  COMP-3.
               10  LH-PRIN-BAL-AFTER       PIC S9(9)V99  COMP-3.
               10  LH-ESCROW-BAL-AFTER     PIC S9(7)V99  COMP-3.
               10  LH-DUE-DATE-PAID        PIC 9(08).
               10  LH-NEXT-DUE-AFTER       PIC 9(08).
               10  LH-BATCH-ID             PIC X(06).
               10  LH-SEQUENCE-NO          PIC 9(05).
               10  FILLER                  PIC X(17).
           05  LH-TRAILER-DATA REDEFINES LH-DETAIL-DATA.
               10  LH-TRL-POSTING-DATE     PIC 9(08).
               10  LH-TRL-DETAIL-COUNT     PIC S9(7)     COMP-3.
               10  LH-TRL-TOTAL-AMOUNT     PIC S9(11)V99 COMP-3.
               10  LH-TRL-INTEREST-TOTAL   PIC S9(11)V99 COMP-3.
               10  LH-TRL-PRINCIPAL-TOTAL  PIC S9(11)V99 COMP-3.
               10  LH-TRL-ESCROW-TOTAL     PIC S9(11)V99 COMP-3.
               10  LH-TRL-LATE-FEE-TOTAL   PIC S9(11)V99 COMP-3.
               10  LH-TRL-SUSPENSE-TOTAL   PIC S9(11)V99 COMP-3.
               10  LH-TRL-REJECT-COUNT     PIC S9(7)     COMP-3.
               10  LH-TRL-REJECT-AMOUNT    PIC S9(11)V99 COMP-3.
               10  FILLER                  PIC X(54).
      *    NOTE: LH-TRL-PRINCIPAL-TOTAL INCLUDES BOTH SCHEDULED
      *    PRINCIPAL AND EXCESS-TO-PRINCIPAL (CURTAILMENT) AMOUNTS.
